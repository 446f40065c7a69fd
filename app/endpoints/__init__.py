"""Webhook endpoints: create, change, rotate, test, activate, recover."""
