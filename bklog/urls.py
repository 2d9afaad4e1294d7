from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path, re_path

from bklog import observability
from bklog.logs import es_views, pages, views

urlpatterns = [
    path("healthz", observability.healthz, name="healthz"),
    path("readyz", observability.readyz, name="readyz"),
    path("metrics", observability.metrics, name="metrics"),
    path("api/v1/index_sets", views.index_sets, name="index_sets"),
    path("api/v1/index_sets/<str:name>", views.index_set_detail, name="index_set_detail"),
    path("api/v1/index_sets/<str:name>/ingest", views.ingest_view, name="ingest"),
    path("api/v1/index_sets/<str:name>/search", views.search_view, name="search"),
    path("api/v1/index_sets/<str:name>/histogram", views.histogram_view, name="histogram"),
    path("api/v1/index_sets/<str:name>/exports", views.exports_view, name="exports"),
    path("api/v1/exports/<uuid:job_id>", views.export_detail, name="export_detail"),
    path("api/v1/exports/<uuid:job_id>/download", views.export_download, name="export_download"),
    path("v1/logs", views.otlp_logs, name="otlp_logs"),  # OpenTelemetry logs (OTLP/HTTP)
    # People (bklog/logs/pages.py): the search page is `/` for a browser; Django's login and admin.
    path("login/", pages.ThrottledLoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path("password/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    path("admin/", admin.site.urls),
    # Elasticsearch-compatible, for log shippers (bklog/logs/es_views.py): after every route above.
    path("", pages.home, name="es_root"),  # a browser's: the search page; a shipper's: es_views.root
    path("_bulk", es_views.bulk, name="es_bulk"),
    path("_license", es_views.license, name="es_license"),
    path("_cluster/health", es_views.cluster_health, name="es_cluster_health"),
    path("_cluster/health/<str:name>", es_views.cluster_health, name="es_cluster_health_index"),
    path("_template/<str:name>", es_views.template, name="es_template"),
    path("_index_template/<str:name>", es_views.template, name="es_index_template"),
    path("<str:name>/_bulk", es_views.bulk, name="es_index_bulk"),
    path("<str:name>", es_views.index, name="es_index"),
    re_path(r"^_", es_views.unknown, name="es_unknown"),  # any other engine API: its JSON error
]

handler400 = "bklog.logs.errors.bad_request"
handler404 = "bklog.logs.errors.not_found"
handler500 = "bklog.logs.errors.server_error"
