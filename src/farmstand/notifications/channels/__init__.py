"""Notification channels: each sends one kind of message through one provider."""
