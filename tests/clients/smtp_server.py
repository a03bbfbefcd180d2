#!/usr/bin/env python3
"""A real SMTP server for the tests: aiosmtpd on loopback, each mail delivered into a Maildir.

Usage: smtp_server.py MAILDIR [--port N] [--user U --password P]

Binds 127.0.0.1 (port 0 = a free one) and prints `listening PORT` on stdout once it accepts
connections. With --user/--password it offers AUTH PLAIN and LOGIN (without TLS, loopback only) and
refuses any other credentials with 535. Runs until killed.
"""
import argparse
import asyncio
import mailbox
import sys
import warnings

from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("maildir")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--user")
    ap.add_argument("--password")
    args = ap.parse_args()
    # AUTH without TLS is what the tests want (loopback only); aiosmtpd warns about it.
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    mailbox.Maildir(args.maildir, create=True)
    handler = Mailbox(args.maildir)

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == args.user
            and auth_data.password.decode() == args.password
        )
        # handled=False: aiosmtpd answers the failure (535) itself.
        return AuthResult(success=ok, handled=False)

    def factory():
        if args.user:
            return SMTP(
                handler,
                authenticator=authenticator,
                auth_required=True,
                auth_require_tls=False,
            )
        return SMTP(handler)

    async def serve():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(factory, "127.0.0.1", args.port)
        port = server.sockets[0].getsockname()[1]
        print(f"listening {port}", flush=True)
        await server.serve_forever()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
