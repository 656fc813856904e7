"""Signals pushed to people: channels (webhook, Discord, Slack, Telegram, e-mail), the
outbox PostgreSQL fills in each signal's own transaction (sql/0013), and the notifier that
delivers it once, with retries, pacing and digests."""
