"""The Django admin's people pages, as the admin role may use them.

Who holds which role changes only on recorded paths (architecture rule 11). The admin role may
create people (with no password), edit their first and last names and switch them off here (a user name,
once given, is kept: the trail, chat links and grants name people by it), but not make anyone a
superuser or staff, not change groups (roles) or permissions, and not set another person's password,
at creation either: those stay with superusers (break-glass). Every change made here is an admin_change record in the chain.
"""

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.forms import UsernameField
from django.contrib.auth.models import Group, User
from django.core.exceptions import PermissionDenied
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice
from django_otp_webauthn.models import WebAuthnCredential

from investigations.admin import AuditedAdmin

# What only a superuser changes: who is a superuser or staff, roles and permissions.
PRIVILEGE_FIELDS = ("is_superuser", "is_staff", "groups", "user_permissions")

admin.site.unregister(User)
admin.site.unregister(Group)
# django-otp's own admin pages show a TOTP key and the recovery codes, and a device deleted there is
# not recorded: factors change only on console.mfa's pages (step-up, audited) and, break-glass,
# `manage.py second_factor reset`.
for model in (TOTPDevice, StaticDevice, WebAuthnCredential):
    if admin.site.is_registered(model):
        admin.site.unregister(model)


class PasswordlessCreationForm(forms.ModelForm):
    """The admin role's add form: the person, with no password. They sign in with single sign-on, or a
    superuser sets one (break-glass): whoever may give roles never knows another person's password, so
    cannot make an approver of their own to sign in as."""

    class Meta:
        model = User
        fields = ("username",)
        field_classes = {"username": UsernameField}

    def save(self, commit=True):
        user = super().save(commit=False)
        user.set_unusable_password()
        if commit:
            user.save()
        return user


@admin.register(User)
class PeopleAdmin(AuditedAdmin, UserAdmin):
    def get_form(self, request, obj=None, **kwargs):
        if obj is None and not request.user.is_superuser:
            kwargs["form"] = PasswordlessCreationForm
        return super().get_form(request, obj, **kwargs)

    def get_fieldsets(self, request, obj=None):
        if obj is None and not request.user.is_superuser:
            return [(None, {"classes": ("wide",), "fields": ("username",)})]
        fieldsets = super().get_fieldsets(request, obj)
        if request.user.is_superuser:
            return fieldsets
        return [
            (name, {**options, "fields": [field for field in options["fields"] if field not in PRIVILEGE_FIELDS]})
            for name, options in fieldsets
        ]

    def get_readonly_fields(self, request, obj=None):
        if request.user.is_superuser:
            return ()
        # A user name is who a person is to the trail ("user:ana"), to a chat id linked to it and to a
        # grant: renaming one person away and another into the name would hand over what names them.
        return ("last_login", "date_joined") if obj is None else ("username", "last_login", "date_joined")

    def user_change_password(self, request, id, form_url=""):
        if not request.user.is_superuser and str(request.user.pk) != str(id):
            raise PermissionDenied  # another person's password: theirs to change, or a superuser's
        return super().user_change_password(request, id, form_url)


@admin.register(Group)
class RolesAdmin(AuditedAdmin, GroupAdmin):
    pass
