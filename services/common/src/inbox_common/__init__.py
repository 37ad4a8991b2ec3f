"""What every Support Inbox service must share, and nothing else.

Event models and topic names (:mod:`inbox_common.events`), the settings base class
(:mod:`inbox_common.settings`), telemetry setup (:mod:`inbox_common.telemetry`), the
Prometheus metrics (:mod:`inbox_common.metrics`), the two error types
(:mod:`inbox_common.errors`) and the Dapr subscription adapter
(:mod:`inbox_common.subscriptions`). No business logic lives here.
"""
