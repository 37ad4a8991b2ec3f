"""The chat widget in headless Chromium, per broker: a customer on the demo site (an origin of
its own, as a real embedding site) and an operator in the inbox, in two browser contexts."""

import re
from collections.abc import Iterator

import pytest
from devstack.browser import log_in, open_conversation
from devstack.widget_demo import start_demo
from playwright.sync_api import Browser, Page, expect

pytestmark = [pytest.mark.e2e, pytest.mark.one_broker]

HOSTILE = '<img src=x onerror="window.pwned=1"> & <b>bold</b>'


def demo_site(stack, output_dir, channel: str, port: int) -> Iterator[str]:
    """The demo site embedding ``channel`` on ``port``, an origin the channel allows."""
    process, url = start_demo(
        stack.gateway_url, channel, output_dir / f"widget-demo-{channel}.log", port=port
    )
    try:
        yield url
    finally:
        process.stop()


@pytest.fixture(scope="module")
def site(stack, output_dir) -> Iterator[str]:
    """The demo site of the channel where operators answer."""
    yield from demo_site(stack, output_dir, stack.widget_channel, stack.widget_site_port)


@pytest.fixture
def customer(browser: Browser, site: str, output_dir, request) -> Iterator[Page]:
    """A customer's page on the demo site; fails the test on a page error or CSP refusal."""
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    page = context.new_page()
    page.set_default_timeout(60_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda m: (
            m.type == "error" and "Content Security Policy" in m.text and errors.append(m.text)
        ),
    )
    sessions: list[dict] = []
    page.on(
        "response",
        lambda r: r.url.endswith("/api/v1/widget/sessions") and sessions.append(r.json()),
    )
    page.goto(site)
    page.sessions = sessions  # type: ignore[attr-defined]
    yield page
    page.screenshot(path=output_dir / f"{request.node.name}-customer.png")
    context.close()
    assert errors == [], errors


def open_chat(page: Page):
    page.click("#support-inbox-launcher")
    chat = page.frame_locator("#support-inbox-chat")
    expect(chat.locator("#message-input")).to_be_visible()
    return chat


def say(chat, text: str) -> None:
    chat.locator("#message-input").fill(text)
    chat.locator("#message-input").press("Enter")
    expect(chat.locator(".message-customer[data-state=stored]").last).to_contain_text(text)


def test_the_customer_and_the_operator_chat_live(customer: Page, page: Page, stack) -> None:
    chat = open_chat(customer)
    expect(chat.locator("#widget")).to_have_attribute("data-mode", "websocket")
    say(chat, "Hello, my new card has not arrived.")
    say(chat, HOSTILE)
    expect(chat.locator(".message-customer img")).to_have_count(0)
    conversation_id = customer.sessions[0]["conversation_id"]  # type: ignore[attr-defined]

    log_in(page, stack)
    open_conversation(page, conversation_id)
    expect(page.locator('#messages [data-author-role="customer"]')).to_have_count(2)
    expect(page.locator("#messages")).to_contain_text(HOSTILE)
    expect(page.locator("#messages img")).to_have_count(0)
    page.fill("#reply-body", "Hello! It was posted yesterday <script>x</script>.")
    page.keyboard.press("Control+Enter")

    reply = chat.locator(".message-operator")
    expect(reply).to_contain_text("It was posted yesterday <script>x</script>.")
    expect(chat.locator("#state-line")).to_have_text("A person has joined")
    expect(chat.locator("#announcer")).to_contain_text("It was posted yesterday")
    assert customer.evaluate("window.pwned") is None
    assert page.evaluate("window.pwned") is None

    # the same browser comes back to the same conversation
    customer.reload()
    chat = open_chat(customer)
    expect(chat.locator(".message")).to_have_count(3)
    assert len(customer.sessions) == 1  # type: ignore[attr-defined]

    # the customer ends the chat: resolved for the operator too
    chat.get_by_role("button", name="End chat").click()
    expect(chat.locator("#state-line")).to_have_text(
        "This chat has ended; write again to reopen it"
    )
    expect(chat.get_by_role("button", name="End chat")).to_be_hidden()
    expect(page.locator("#activity-list")).to_contain_text("the customer ended the chat")


def test_polling_carries_both_sides_when_the_sockets_are_blocked(
    customer: Page, page: Page, stack
) -> None:
    customer.route_web_socket("**/api/v1/widget/ws", lambda ws: ws.close())
    page.route_web_socket("**/ws*", lambda ws: ws.close())
    chat = open_chat(customer)
    expect(chat.locator("#widget")).to_have_attribute("data-mode", "polling")
    say(chat, "Are you there? My sockets are blocked.")
    conversation_id = customer.sessions[0]["conversation_id"]  # type: ignore[attr-defined]

    log_in(page, stack)
    expect(page.locator("#live-status")).to_have_attribute("data-mode", "polling")
    open_conversation(page, conversation_id)
    expect(page.locator("#messages")).to_contain_text("My sockets are blocked.")
    page.fill("#reply-body", "Yes, polling brought your message.")
    page.keyboard.press("Control+Enter")
    expect(chat.locator(".message-operator")).to_contain_text("polling brought your message")
    expect(chat.locator("#widget")).to_have_attribute("data-mode", "polling")


def test_a_phone_sized_screen_and_the_keyboard(browser: Browser, site: str) -> None:
    context = browser.new_context(viewport={"width": 360, "height": 700}, has_touch=True)
    page = context.new_page()
    try:
        page.goto(site)
        page.focus("#support-inbox-launcher")
        page.keyboard.press("Enter")
        frame = page.locator("#support-inbox-chat")
        expect(frame).to_be_visible()
        box = frame.bounding_box()
        assert box and box["width"] >= 359 and box["height"] >= 699, box
        chat = page.frame_locator("#support-inbox-chat")
        expect(chat.locator("#message-input")).to_be_focused()
        width = chat.locator("body").evaluate("b => b.scrollWidth - b.clientWidth")
        assert width <= 0, "the widget scrolls sideways on a phone"
        page.keyboard.press("Escape")
        expect(frame).to_be_hidden()
        expect(page.locator("#support-inbox-launcher")).to_be_focused()
    finally:
        context.close()


@pytest.fixture(scope="module")
def assistant_site(stack, output_dir) -> Iterator[str]:
    """The demo site of the channel whose AI assistant answers customers itself."""
    yield from demo_site(
        stack, output_dir, stack.widget_assistant_channel, stack.widget_assistant_site_port
    )


def test_the_assistant_writes_its_answer_then_hands_off_to_a_person(
    browser: Browser, assistant_site: str, page: Page, stack
) -> None:
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    customer = context.new_page()
    try:
        customer.goto(assistant_site)
        chat = open_chat(customer)
        expect(chat.locator("#state-line")).to_contain_text("AI assistant answers first")
        say(chat, "[[fake:stream]] How do I top up my account by card?")
        # the reply as it is written, then the stored answer in its place
        expect(chat.locator(".message[data-state=writing]")).to_contain_text("Hello")
        answer = chat.locator(".message-assistant[data-state=stored]")
        expect(answer).to_contain_text("Hello, thank you for reaching out")
        expect(answer.locator(".message-author")).to_have_text("Assistant (AI)")
        expect(chat.locator(".message[data-state=writing]")).to_have_count(0)

        say(chat, "Thanks, but can I talk to a real person please?")
        expect(chat.locator("#state-line")).to_have_text("A person will answer you shortly")
        expect(chat.locator("#announcer")).to_contain_text("A person will answer you shortly")
        expect(chat.locator(".message-assistant")).to_have_count(1)

        # the operator sees the assistant's answer and why it handed off
        log_in(page, stack)
        conversation = page.locator(".conv-item").filter(has_text="talk to a real person")
        conversation.first.click()
        expect(page.locator('#messages [data-author-role="assistant"]')).to_have_count(1)
        # with the help articles it was grounded on (the tool round's), which the customer
        # does not see
        sources = page.locator('#messages [data-author-role="assistant"] .ai-sources a')
        expect(sources.first).to_have_attribute("data-slug", re.compile(r"^[a-z0-9-]+$"))
        expect(chat.locator(".ai-sources")).to_have_count(0)
        page.click("#activity .activity-toggle")
        expect(page.locator("#activity-list")).to_contain_text(
            "The AI assistant handed the conversation to a person: the customer asked for a person"
        )
    finally:
        context.close()
