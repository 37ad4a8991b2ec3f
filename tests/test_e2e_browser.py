"""The inbox in headless Chromium (Debian's, driven by Playwright) against the whole stack."""

import pytest
from devstack.browser import log_in, open_conversation
from playwright.sync_api import Page, expect

pytestmark = [pytest.mark.e2e, pytest.mark.one_broker]


def test_insight_arrives_live_and_suggestion_is_only_copied(page: Page, stack, inbox) -> None:
    log_in(page, stack)
    expect(page.locator("#live-status")).to_have_attribute("data-mode", "websocket")
    accepted = inbox.send_customer("How can I receive a virtual card?")
    open_conversation(page, accepted["conversation_id"])
    panel = page.locator(f'[data-message-id="{accepted["message_id"]}"] .ai-panel')
    expect(panel).to_have_attribute("data-status", "available")
    expect(panel.locator(".intent-badge")).to_have_text("getting_virtual_card")
    expect(panel.locator(".ai-summary")).to_contain_text("virtual card")
    suggestion = panel.locator(".ai-suggested-reply").inner_text()
    assert suggestion

    panel.locator(".use-suggestion").click()
    expect(page.locator("#reply-body")).to_have_value(suggestion)
    expect(page.locator("#reply-body")).to_be_focused()
    page.wait_for_timeout(1500)
    assert len(inbox.conversation(accepted["conversation_id"])["messages"]) == 1  # not sent

    page.keyboard.press("Control+Enter")
    operator_message = page.locator('#messages [data-author-role="operator"]:not(.pending)')
    expect(operator_message).to_have_count(1)
    expect(operator_message.locator(".message-body")).to_have_text(suggestion.strip())
    assert inbox.conversation(accepted["conversation_id"])["messages"][1]["author_id"] == "demo"


def test_polling_takes_over_when_the_websocket_is_blocked(page: Page, stack, inbox) -> None:
    page.route_web_socket("**/ws*", lambda ws: ws.close())
    log_in(page, stack)
    expect(page.locator("#live-status")).to_have_attribute("data-mode", "polling")
    accepted = inbox.send_customer("I'm still waiting for my new card.")
    open_conversation(page, accepted["conversation_id"])
    panel = page.locator(f'[data-message-id="{accepted["message_id"]}"] .ai-panel')
    expect(panel).to_have_attribute("data-status", "available")
    expect(panel.locator(".intent-badge")).to_have_text("card_arrival")
    expect(page.locator("#live-status")).to_have_attribute("data-mode", "polling")


def test_garbage_model_output_shows_unavailable(page: Page, stack, inbox) -> None:
    log_in(page, stack)
    accepted = inbox.send_customer("[[fake:garbage]] Why was my card declined?")
    open_conversation(page, accepted["conversation_id"])
    panel = page.locator(f'[data-message-id="{accepted["message_id"]}"] .ai-panel')
    expect(panel).to_have_attribute("data-status", "unavailable")
    expect(panel.locator(".ai-error")).to_contain_text("no JSON object")
    expect(panel.locator(".use-suggestion")).to_be_hidden()


def test_hostile_text_is_rendered_as_text(page: Page, stack, inbox) -> None:
    log_in(page, stack)
    hostile = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
    accepted = inbox.send_customer(hostile)
    open_conversation(page, accepted["conversation_id"])
    message = page.locator(f'[data-message-id="{accepted["message_id"]}"]')
    expect(message.locator(".message-body")).to_have_text(hostile)
    expect(message.locator(".ai-panel")).to_have_attribute("data-status", "available")
    expect(message.locator(".ai-summary")).to_contain_text("<img src=x")  # model echoed it
    assert page.locator("#messages img, #messages script").count() == 0
    assert page.evaluate("window.__pwned") is None


def test_regenerate_replaces_the_insight_with_a_new_revision(page: Page, stack, inbox) -> None:
    log_in(page, stack)
    accepted = inbox.send_customer("[[fake:delayed]] How do I top up by card?")
    open_conversation(page, accepted["conversation_id"])
    panel = page.locator(f'[data-message-id="{accepted["message_id"]}"] .ai-panel')
    expect(panel).to_have_attribute("data-status", "available")
    expect(panel.locator(".ai-meta")).not_to_contain_text("revision")
    panel.locator(".regenerate-insight").click()
    expect(panel).to_have_attribute("data-status", "processing")
    expect(panel.locator(".regenerate-insight")).to_be_hidden()  # one analysis at a time
    expect(panel).to_have_attribute("data-status", "available")
    expect(panel.locator(".ai-meta")).to_contain_text("revision 2")
    insight = inbox.message(accepted["conversation_id"], accepted["message_id"])["insight"]
    assert (insight["revision"], insight["requested_by"]) == (2, stack.operator[0])


def test_the_reply_appears_as_it_is_written_then_the_insight_replaces_it(
    page: Page, stack, inbox
) -> None:
    log_in(page, stack)
    expect(page.locator("#live-status")).to_have_attribute("data-mode", "websocket")
    first = inbox.send_customer("Why is my card payment still pending?")
    open_conversation(page, first["conversation_id"])
    panel = page.locator(f'[data-message-id="{first["message_id"]}"] .ai-panel')
    expect(panel).to_have_attribute("data-status", "available")
    inbox_reply = inbox.reply(first["conversation_id"], "Let me check.")
    expect(page.locator(f'[data-message-id="{inbox_reply["message_id"]}"]')).to_be_visible()

    # the same conversation, a second customer message whose reply the model writes slowly
    second = inbox.send_customer(
        "[[fake:stream]] It is still pending today.", conversation_id=first["conversation_id"]
    )
    panel = page.locator(f'[data-message-id="{second["message_id"]}"] .ai-panel')
    draft = panel.locator(".ai-draft-text")
    expect(draft).to_contain_text("Hello, thank you")
    expect(panel.locator(".ai-status")).to_have_text("AI is writing a reply…")
    expect(panel.locator(".use-suggestion")).to_have_count(0)  # a draft is never usable
    partial = draft.inner_text()
    expect(panel).to_have_attribute("data-status", "available")
    expect(panel.locator(".ai-draft")).to_have_count(0)
    final = panel.locator(".ai-suggested-reply").inner_text()
    assert final.startswith(partial) and len(final) > len(partial)
    expect(panel.locator(".use-suggestion")).to_be_visible()


def test_a_broken_stream_ends_unavailable_not_half_written(page: Page, stack, inbox) -> None:
    log_in(page, stack)
    expect(page.locator("#live-status")).to_have_attribute("data-mode", "websocket")
    accepted = inbox.send_customer("[[fake:broken]] My transfer has not arrived.")
    open_conversation(page, accepted["conversation_id"])
    panel = page.locator(f'[data-message-id="{accepted["message_id"]}"] .ai-panel')
    expect(panel).to_have_attribute("data-status", "unavailable")
    expect(panel.locator(".ai-error")).to_have_text(
        "the model's answer broke off before it was complete"
    )
    expect(panel.locator(".ai-draft, .ai-suggested-reply, .use-suggestion")).to_have_count(0)


def test_the_panel_shows_the_strategy_and_links_the_articles_used(page: Page, stack, inbox) -> None:
    log_in(page, stack)
    accepted = inbox.send_customer("There is a card payment I don't recognise, is it fraud?")
    open_conversation(page, accepted["conversation_id"])
    panel = page.locator(f'[data-message-id="{accepted["message_id"]}"] .ai-panel')
    expect(panel).to_have_attribute("data-status", "available")
    expect(panel.locator(".strategy-badge")).to_have_text("Escalate")
    expect(panel.locator(".ai-suggested-reply")).to_contain_text("A specialist team")
    source = panel.locator(".ai-source").first
    expect(source).to_have_text("A card payment the customer does not recognise")
    article = page.request.get(source.get_attribute("href"))
    assert article.ok and article.text().startswith(
        "# A card payment the customer does not recognise"
    )
