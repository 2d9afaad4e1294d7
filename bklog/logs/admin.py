"""Django's admin for what people manage: index sets (with the groups that may search them) and API
tokens; users and groups come from django.contrib.auth's own admin. A token is shown once, when it
is made (only its digest is stored), as `bklog create_index_set` and `create_api_token` do."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages

from bklog.logs.index_sets import BadSetting, check_settings
from bklog.logs.models import INDEX_SET_NAME, ApiToken, IndexSet, hash_token, new_token
from bklog.logs.parsing import validate_parse_rule

admin.site.site_header = admin.site.site_title = "BK LOG administration"
admin.site.site_url = "/"


class TokenShownOnce:
    """Adding one makes its token: only the digest is stored (`hash_field`), the token itself is
    said once, in the admin's message (`shown`, formatted with the object and the token)."""

    token_prefix = hash_field = shown = ""

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        token = new_token(self.token_prefix)
        setattr(obj, self.hash_field, hash_token(token))
        super().save_model(request, obj, form, change)
        messages.warning(request, self.shown.format(obj=obj, token=token))


class IndexSetForm(forms.ModelForm):
    class Meta:
        model = IndexSet
        fields = ["name", "parse", "parse_pattern", "retention_days", "message_field", "ingest_lines_per_second", "groups"]

    def clean_name(self):
        name = self.cleaned_data["name"]
        if not INDEX_SET_NAME.match(name):
            raise forms.ValidationError("1-100 of a-z, 0-9, '_' and '-', starting with a letter or digit")
        return name

    def clean(self):
        data = super().clean()
        parse = data.get("parse")
        if parse:
            rule = f"regex:{data.get('parse_pattern', '')}" if parse == IndexSet.PARSE_REGEX else parse
            try:
                _, data["parse_pattern"] = validate_parse_rule(rule)
            except ValueError as exc:
                self.add_error("parse_pattern" if parse == IndexSet.PARSE_REGEX else "parse", str(exc))
        for name in ("retention_days", "message_field", "ingest_lines_per_second"):
            if name in data and data[name] is not None:
                try:
                    check_settings(**{name: data[name]})
                except BadSetting as exc:
                    self.add_error(name, str(exc))
        return data


@admin.register(IndexSet)
class IndexSetAdmin(TokenShownOnce, admin.ModelAdmin):
    token_prefix, hash_field = "ingest", "ingest_token_hash"
    shown = "The ingest token of {obj.name} (shown this once; give it to its shippers now): {token}"
    form = IndexSetForm
    list_display = ("name", "parse", "retention_days", "ingest_lines_per_second", "created_at")
    search_fields = ("name",)
    filter_horizontal = ("groups",)

    def get_readonly_fields(self, request, obj=None):
        # Lines were parsed and stored under this name and rule: changing them would not re-parse.
        return ("name", "parse", "parse_pattern") if obj else ()

    def has_delete_permission(self, request, obj=None):
        return False  # deleting drops every line: done with the API by an admin token, on purpose


@admin.register(ApiToken)
class ApiTokenAdmin(TokenShownOnce, admin.ModelAdmin):
    token_prefix, hash_field = "api", "token_hash"
    shown = "The API token {obj.name} (shown this once; keep it now): {token}"
    list_display = ("name", "role", "created_at")
    fields = ("name", "role")

    def get_readonly_fields(self, request, obj=None):
        return ("name",) if obj else ()
