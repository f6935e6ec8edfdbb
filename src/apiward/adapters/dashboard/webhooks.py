"""Settings > Webhooks: the endpoints of an environment, their deliveries, a test send,
a secret roll, disabling and deleting; each through the service the HTTP API calls
(``/v1/webhooks``), with its checks of the URL and of who may read which events."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.datastructures import FormData
from starlette.responses import Response

from apiward.adapters.dashboard.web import (
    DashboardRoute,
    FieldErrors,
    Me,
    chosen,
    notice,
    paging,
    render,
    see_other,
    signed_in,
    text,
    url,
)
from apiward.adapters.http.deps import WebhooksDep
from apiward.core.errors import ApiwardError
from apiward.core.webhooks import WebhookEndpoint
from apiward.services.webhooks import WEBHOOK_EVENTS, CreatedWebhook, check_events

router = APIRouter(route_class=DashboardRoute)

NOTICES = {
    "tested": "A webhook.test event is queued: it is sent within seconds; its delivery "
    "appears below.",
    "disabled": "The endpoint is disabled: no event is sent to it until you enable it.",
    "enabled": "The endpoint is enabled.",
    "deleted": "The endpoint is deleted.",
    "redelivered": "The delivery is queued again: it is sent within seconds.",
}
LOST = (
    "It signs every delivery (the Apiward-Signature header); apiward keeps it encrypted "
    "and never shows it again. If you lose it, roll it to get a new one."
)


def _secret_page(request: Request, created: CreatedWebhook, title: str) -> Response:
    endpoint = created.endpoint
    return render(
        request,
        "secret.html",
        status=201,
        section="webhooks",
        title=title,
        what="signing secret",
        label="Signing secret",
        name=endpoint.url,
        environment=endpoint.environment,
        secret=created.secret,
        client_id=None,
        note=None,
        lost=LOST,
        back=url(f"/webhooks/{endpoint.id}", env=endpoint.environment),
    )


@router.get("/webhooks")
async def list_webhooks(
    request: Request, webhooks: WebhooksDep, me: Me = Depends(signed_in)
) -> Response:
    me.require("webhooks:read")
    page = await webhooks.list_endpoints(me.principal, paging(request), environment=me.env)
    return render(
        request, "webhooks.html", flash=notice(request, NOTICES), section="webhooks", page=page
    )


def _form(
    request: Request, *, values: FormData | None = None, errors: FieldErrors | None = None
) -> Response:
    return render(
        request,
        "webhook_new.html",
        status=400 if errors else 200,
        flash=errors.flash() if errors else None,
        section="webhooks",
        events=list(WEBHOOK_EVENTS.items()),
        values=values or FormData(),
        errors=errors or FieldErrors(),
    )


@router.get("/webhooks/new")
async def new_webhook(request: Request, me: Me = Depends(signed_in)) -> Response:
    me.require("webhooks:manage")
    return _form(request)


@router.post("/webhooks")
async def create_webhook(
    request: Request, webhooks: WebhooksDep, me: Me = Depends(signed_in)
) -> Response:
    me.require("webhooks:manage")
    form = await request.form()
    errors = FieldErrors()
    events = chosen(form, "event")
    with errors.on("events"):
        check_events(events)
    if not errors:
        try:
            created = await webhooks.create(
                me.principal,
                url=text(form, "url", 2048),
                events=events,
                description=text(form, "description", 500),
                environment=me.env,
            )
        except ApiwardError as exc:
            # The URL is the one field the service checks alone (its scheme, its host,
            # the addresses it resolves to): its refusal belongs next to it.
            errors.fields["url"] = exc.message
    if errors:
        return _form(request, values=form, errors=errors)
    return _secret_page(request, created, "Webhook endpoint added")


@router.get("/webhooks/{webhook_id}")
async def webhook_page(
    webhook_id: str, request: Request, webhooks: WebhooksDep, me: Me = Depends(signed_in)
) -> Response:
    me.require("webhooks:read")
    endpoint = await webhooks.get(me.principal, webhook_id)
    deliveries = await webhooks.deliveries(me.principal, endpoint.id, paging(request, 20))
    return render(
        request,
        "webhook.html",
        flash=notice(request, NOTICES),
        section="webhooks",
        endpoint=endpoint,
        deliveries=deliveries,
        page=deliveries,
    )


def _back(endpoint: WebhookEndpoint, done: str) -> Response:
    return see_other(url(f"/webhooks/{endpoint.id}", env=endpoint.environment, done=done))


@router.post("/webhooks/{webhook_id}/test")
async def send_test_event(
    webhook_id: str, webhooks: WebhooksDep, me: Me = Depends(signed_in)
) -> Response:
    me.require("webhooks:manage")
    endpoint = await webhooks.get(me.principal, webhook_id)
    await webhooks.send_test(me.principal, endpoint.id)
    return _back(endpoint, "tested")


@router.post("/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver")
async def redeliver(
    webhook_id: str, delivery_id: str, webhooks: WebhooksDep, me: Me = Depends(signed_in)
) -> Response:
    me.require("webhooks:manage")
    endpoint = await webhooks.get(me.principal, webhook_id)
    await webhooks.redeliver(me.principal, endpoint.id, delivery_id)
    return _back(endpoint, "redelivered")


@router.post("/webhooks/{webhook_id}/disable")
async def disable_webhook(
    webhook_id: str, webhooks: WebhooksDep, me: Me = Depends(signed_in)
) -> Response:
    me.require("webhooks:manage")
    return _back(await webhooks.update(me.principal, webhook_id, disabled=True), "disabled")


@router.post("/webhooks/{webhook_id}/enable")
async def enable_webhook(
    webhook_id: str, webhooks: WebhooksDep, me: Me = Depends(signed_in)
) -> Response:
    me.require("webhooks:manage")
    return _back(await webhooks.update(me.principal, webhook_id, disabled=False), "enabled")


@router.get("/webhooks/{webhook_id}/roll")
async def confirm_roll(
    webhook_id: str, request: Request, webhooks: WebhooksDep, me: Me = Depends(signed_in)
) -> Response:
    me.require("webhooks:manage")
    endpoint = await webhooks.get(me.principal, webhook_id)
    return render(
        request, "webhook_confirm.html", section="webhooks", endpoint=endpoint, act="roll"
    )


@router.post("/webhooks/{webhook_id}/roll")
async def roll_secret(
    webhook_id: str, request: Request, webhooks: WebhooksDep, me: Me = Depends(signed_in)
) -> Response:
    me.require("webhooks:manage")
    created = await webhooks.roll_secret(me.principal, webhook_id)
    return _secret_page(request, created, "Signing secret rolled")


@router.get("/webhooks/{webhook_id}/delete")
async def confirm_delete(
    webhook_id: str, request: Request, webhooks: WebhooksDep, me: Me = Depends(signed_in)
) -> Response:
    me.require("webhooks:manage")
    endpoint = await webhooks.get(me.principal, webhook_id)
    return render(
        request, "webhook_confirm.html", section="webhooks", endpoint=endpoint, act="delete"
    )


@router.post("/webhooks/{webhook_id}/delete")
async def delete_webhook(
    webhook_id: str, webhooks: WebhooksDep, me: Me = Depends(signed_in)
) -> Response:
    me.require("webhooks:manage")
    endpoint = await webhooks.get(me.principal, webhook_id)
    await webhooks.delete(me.principal, endpoint.id)
    return see_other(url("/webhooks", env=endpoint.environment, done="deleted"))
