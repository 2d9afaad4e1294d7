"""JSON error pages: the API never answers HTML."""

from django.http import JsonResponse


def bad_request(request, exception=None):
    return JsonResponse({"error": "bad request"}, status=400)


def not_found(request, exception=None):
    return JsonResponse({"error": f"no such endpoint: {request.path}"}, status=404)


def server_error(request):
    return JsonResponse({"error": "internal server error"}, status=500)
