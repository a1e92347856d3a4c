"""Accounts are Django's users and groups (roles: console.roles).

This module also makes the console app send post_migrate, which keeps the roles' permissions.
"""
