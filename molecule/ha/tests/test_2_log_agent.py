"""rsyslog from Debian on every host (roles/log_agent) ships syslog and BK LOG's own log files into
index set "syslog" through the balancer's Elasticsearch-compatible bulk endpoint. (No line lost
during a rolling upgrade: test_rollout.py runs this traffic through rolling_upgrade.yml.)"""

from __future__ import annotations

import json
import time

from agent import INDEX_SET, SyslogTraffic, search_total, wait_all_shipped
from conftest import LB, group, host, wait_until
from load import Load


def test_rsyslog_runs_with_the_bulk_output_on_every_host():
    for name in group("bklog_log_agent"):
        h = host(name)
        assert h.service("rsyslog").is_running, name
        assert h.package("rsyslog-elasticsearch").is_installed, name
        config = h.file("/etc/rsyslog.d/60-bklog.conf")
        assert config.mode == 0o600 and config.user == "root", name  # it holds the token
        assert 'type="omelasticsearch"' in config.content_string


def test_syslog_lines_of_every_host_are_searchable_with_their_fields(admin_token):
    client = Load(LB, INDEX_SET, "", admin_token)
    traffic = SyslogTraffic(every=0.1).start()
    wait_until(lambda: all(host(n).file(f"/tmp/{traffic.run_id}.sent").exists for n in group("bklog_log_agent")),
               "the logger loops to start", timeout=30)
    sent = traffic.stop()
    assert all(count > 0 for count in sent.values()), sent
    wait_all_shipped(client, traffic, timeout=120)
    # Parsed as JSON by the index set: host, program and severity are fields of each line.
    name = group("bklog_api")[0]
    status, body = client.request("GET", f"/api/v1/index_sets/{INDEX_SET}/search?q={traffic.tag(name)}&field.program=agent-check&size=1")
    hit = json.loads(body)["hits"][0]
    assert status == 200 and hit["fields"].get("host") == name and hit["fields"].get("program") == "agent-check", hit
    assert hit["message"].startswith(traffic.tag(name)), hit  # the message alone, trimmed


def test_bklog_log_files_are_shipped_too(admin_token):
    client = Load(LB, INDEX_SET, "", admin_token)
    name = group("bklog_workers")[0]
    token = f"filecheck{int(time.time())}"
    # A file matching log_agent_files' /var/log/bklog/*.log, as the service's own logs are.
    host(name).check_output(f"echo '{token} from a bklog log file' >> /var/log/bklog/agent-check.log")
    # The phrase: the access lines of these searches (shipped too) have the word, not the phrase.
    phrase = f"%22{token}+from+a+bklog+log+file%22"
    wait_until(lambda: search_total(client, phrase, program="bklog") == 1, "the file's line searchable", timeout=120, every=5)


def test_lines_logged_while_bklog_is_unreachable_arrive_when_it_is_back(admin_token):
    """The balancers' nginx down (both: the floating address would otherwise move to the other):
    every bulk request fails, rsyslog suspends the output and queues; every line arrives, once, when
    they are back. (Not tested: rsyslog restarted during such an outage saves
    its queue, but the batch in flight when the output was suspended can be lost: 1 line of 78 on
    this machine. Noted on the issue.)"""
    client = Load(LB, INDEX_SET, "", admin_token)
    balancers = [host(name) for name in group("bklog_lb")]
    for balancer in balancers:
        balancer.check_output("systemctl stop nginx")
    try:
        traffic = SyslogTraffic(every=0.2).start()
        time.sleep(20)  # two of rsyslog's retries (log_agent_retry_interval 10 s) fail meanwhile
        traffic.stop()
    finally:
        for balancer in balancers:
            balancer.check_output("systemctl start nginx")
    wait_all_shipped(client, traffic, timeout=180)
