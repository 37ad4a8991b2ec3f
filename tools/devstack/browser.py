"""Steps the browser tests share (Playwright, sync API)."""

from playwright.sync_api import Page, expect


def log_in(page: Page, stack) -> None:
    """Open the inbox and sign in as the stack's operator."""
    page.goto("/")
    user, password = stack.operator
    page.fill("#username", user)
    page.fill("#password", password)
    page.click("#login-submit")
    expect(page.locator("#app")).to_be_visible()


def open_conversation(page: Page, conversation_id: str) -> None:
    """Click the conversation in the inbox list and wait for it to show."""
    item = page.locator(f'.conv-item[data-conversation-id="{conversation_id}"]')
    expect(item).to_be_visible()
    item.click()
    expect(page.locator("#view-content")).to_be_visible()
