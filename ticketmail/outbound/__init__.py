"""Outbound mail: templates, composing, the support team's actions, the relay."""
