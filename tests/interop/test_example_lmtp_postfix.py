"""A private Postfix delivering into examples/lmtp_sink.py, configured as the example's
docstring says (``virtual_transport = lmtp:inet:127.0.0.1:PORT``): the sink prints
the message Postfix hands over, and Postfix logs each recipient as sent with the
sink's own reply."""

from __future__ import annotations

import signal
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_examples_agents import Running

from .peers import free_port, require_binary, running_postfix

pytestmark = pytest.mark.interop


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[tuple[Running, int]]:
    require_binary("postfix")
    port = free_port()
    example = Running("lmtp_sink.py", "--port", str(port), cwd=tmp_path)
    try:
        example.wait_line(f"LMTP sink on 127.0.0.1:{port}")
        yield example, port
    finally:
        example.stop()


def test_postfix_delivers_into_the_example_lmtp_sink(sink: tuple[Running, int]) -> None:
    example, port = sink
    with running_postfix(transport=f"lmtp:inet:127.0.0.1:{port}") as postfix:
        with smtplib.SMTP("127.0.0.1", postfix.port, timeout=30) as smtp:
            refused = smtp.sendmail(
                "sender@example.test", ["alice@example.test", "bob@example.test"],
                "From: sender@example.test\r\nSubject: through Postfix\r\n"
                "Message-ID: <sink-proof@example.test>\r\n\r\nHello.\r\n",
            )
        assert refused == {}
        for user in ("alice", "bob"):
            line = postfix.wait_log(f"to=<{user}@example.test>", timeout=30)
            assert "status=sent" in line, line
            assert f"250 2.0.0 <{user}@example.test> delivered, id " in line, line
            assert f"relay=127.0.0.1[127.0.0.1]:{port}" in line, line
        # One LMTP transaction for both (Postfix batches recipients of one domain).
        header = example.wait_line("--- message 1 from <sender@example.test> to ")
        assert "<alice@example.test>" in header and "<bob@example.test>" in header
        example.wait_line("Received: from ")
        example.wait_line("\tby sink.example.test (mailagents) with LMTP id ")
        example.wait_line("\tby mx.example.test (Postfix) with ESMTP id ")  # Postfix's own
        example.wait_line("Subject: through Postfix")
        example.wait_line("Message-ID: <sink-proof@example.test>")
    example.process.send_signal(signal.SIGTERM)
    assert example.wait_exit() == 0
    example.wait_line("stopped after 1 message(s)")
