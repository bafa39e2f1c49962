"""Alert delivery: a pluggable sink (Slack-compatible webhook, ntfy-style plain-text push, the log)."""

import json
import logging
from dataclasses import dataclass

import dagster as dg
import httpx

logger = logging.getLogger("stock_lakehouse.alerts")


@dataclass(frozen=True)
class Alert:
    """One message. ``key`` identifies the condition, so a repeat can be recognised and dropped."""

    kind: str  # freshness | freshness_resolved | run_failure | check_failure | anomaly
    key: str
    text: str

    def slack_json(self) -> dict[str, str]:
        return {"text": self.text, "kind": self.kind, "key": self.key}


class AlertSink(dg.ConfigurableResource):
    """Where alerts go.

    Attributes:
        webhook_url: POST target; empty disables it. Give it through an environment variable
            (``STOCK_LAKEHOUSE_ALERT_WEBHOOK``): webhook URLs often embed a token.
        webhook_format: ``slack`` (JSON ``{"text": ...}``, also accepted by Mattermost/Teams-style
            incoming webhooks) or ``ntfy`` (the text as a plain-text body).
        log: also write each alert to the log.
        timeout_seconds: per POST.
    """

    webhook_url: str = ""
    webhook_format: str = "slack"
    log: bool = True
    timeout_seconds: float = 10.0

    def send(self, alert: Alert) -> bool:
        """Deliver ``alert``; returns False (and logs why) when the webhook could not be reached."""
        if self.log:
            logger.warning("[%s] %s", alert.kind, alert.text)
        if not self.webhook_url:
            return True
        try:
            if self.webhook_format == "ntfy":
                resp = httpx.post(
                    self.webhook_url,
                    content=alert.text.encode(),
                    headers={"Title": alert.kind},
                    timeout=self.timeout_seconds,
                )
            else:
                resp = httpx.post(
                    self.webhook_url,
                    content=json.dumps(alert.slack_json()),
                    headers={"Content-Type": "application/json"},
                    timeout=self.timeout_seconds,
                )
            resp.raise_for_status()
        except httpx.HTTPError as exc:
            # The URL may hold a token: name the failure, not the URL.
            logger.error("alert webhook failed (%s) for alert %s", type(exc).__name__, alert.key)
            return False
        return True
