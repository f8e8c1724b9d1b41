"""Intake: one inbound mail start to finish, the admission workers, routing, replays."""
