from django.urls import path

from . import views

app_name = "stacks"

urlpatterns = [
    path("", views.environment_list, name="environment_list"),
    path("environments/<str:name>/", views.environment_detail, name="environment_detail"),
]
