"""bklog_programs: the supervisor program names bklog/app.yml declares, for every role that names
a program (one place for the names: app.yml; one place that reads them: here).

    {{ lookup('ansible.builtin.file', app_spec) | from_yaml | bklog_programs }}
      -> {prefix: bklog-, api: bklog-api, beat: bklog-beat, worker_prefix: bklog-worker-,
          workers: {default: bklog-worker-default, ...}}
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError


def bklog_programs(spec: dict) -> dict:
    try:
        prefix = spec["program_prefix"]
        celery = spec["celery"]
        names = {
            "prefix": prefix,
            "api": spec["api"]["program"],
            "beat": celery["beat"]["program"],
            "worker_prefix": celery["worker_program_prefix"],
            "workers": {w["name"]: celery["worker_program_prefix"] + w["name"] for w in celery["workers"]},
        }
    except (KeyError, TypeError) as exc:
        raise AnsibleFilterError(f"bklog_programs: app.yml lacks {exc} (program_prefix, api.program, "
                                 "celery.worker_program_prefix, celery.beat.program, celery.workers)") from exc
    outside = [n for n in [names["api"], names["beat"], *names["workers"].values()] if not n.startswith(prefix)]
    if outside:
        raise AnsibleFilterError(f"bklog_programs: {', '.join(outside)} do not start with program_prefix {prefix!r}")
    return names


class FilterModule:
    def filters(self):
        return {"bklog_programs": bklog_programs}
