"""A real SMTP server (aiosmtpd) on 127.0.0.1:<argv[1]> for the suite's
notification tests: prints each message it accepts as one JSON line
({"from", "to", "subject", "body"}) and runs until stdin closes.
"""

import json
import sys
from email import message_from_bytes
from email.policy import default

from aiosmtpd.controller import Controller


class Sink:
    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        message = message_from_bytes(envelope.content, policy=default)
        line = {
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "subject": str(message["subject"]),
            "body": message.get_content(),
        }
        print(json.dumps(line), flush=True)
        return "250 Message accepted for delivery"


def main() -> None:
    controller = Controller(Sink(), hostname="127.0.0.1", port=int(sys.argv[1]))
    controller.start()
    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.read()
    controller.stop()


if __name__ == "__main__":
    main()
