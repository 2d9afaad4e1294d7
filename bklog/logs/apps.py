from django.apps import AppConfig


class LogsConfig(AppConfig):
    name = "bklog.logs"
    label = "logs"
    default_auto_field = "django.db.models.BigAutoField"
