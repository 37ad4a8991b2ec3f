"""Browser security headers: the pages' Content-Security-Policy."""

from gateway.middleware import content_security_policy


def directives(policy: str) -> dict[str, str]:
    return dict(d.strip().split(" ", 1) for d in policy.split(";"))


def test_pages_connect_only_to_the_gateway_and_the_collector() -> None:
    assert directives(content_security_policy())["connect-src"] == "'self'"
    collector = "https://otel.example.com:443"
    assert directives(content_security_policy((collector,)))["connect-src"] == (
        f"'self' {collector}"
    )
