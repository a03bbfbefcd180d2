#!/usr/bin/env python3
"""Python zeep client against wharf's document/literal WSDLs.

Usage: python3 zeep_client.py BASE_URL USER PASSWORD
  e.g. python3 zeep_client.py http://127.0.0.1:18181 orderflow secret-pass-1

a. the clean wharf WSDL (/wsdl/wharf.wsdl, SOAP 1.1, document/literal wrapped) with HTTP Basic auth,
   plus login + sessionId;
b. the Magento 2 style WSDL (/soap/default?wsdl&services=...; SOAP 1.2) with an admin token sent as
   "Authorization: Bearer".

Prints one line per step ("ok ..." or "FAIL ..."); exits 0 only if every step passed. After a failing
step it prints the exception and the last envelopes sent and received. Every HTTP request must go to
BASE_URL's origin: anything else (the internet) fails the run. See README.md for the data it sends.
"""

import sys
import traceback
from urllib.parse import urlsplit

import requests
from lxml import etree
from zeep import Client
from zeep.exceptions import Fault, TransportError
from zeep.plugins import HistoryPlugin
from zeep.transports import Transport

M2_SERVICES = (
    "integrationAdminTokenServiceV1,"
    "realtimeDespatchOrderFlowInventoryRequestManagementV1,"
    "realtimeDespatchOrderFlowShipmentRequestManagementV1"
)
TOKEN_OP = "integrationAdminTokenServiceV1CreateAdminAccessToken"
INVENTORY_OP = "realtimeDespatchOrderFlowInventoryRequestManagementV1Update"
SHIPMENT_OP = "realtimeDespatchOrderFlowShipmentRequestManagementV1Create"


class LocalOnlyTransport(Transport):
    """A zeep transport that refuses every URL outside the server under test."""

    def __init__(self, base_url, **kwargs):
        super().__init__(timeout=10, operation_timeout=10, **kwargs)
        self._origin = _origin(base_url)

    def _check(self, url):
        if _origin(url) != self._origin:
            raise RuntimeError(f"refusing to fetch {url!r}: not on {self._origin}")

    def load(self, url):
        self._check(url)
        return super().load(url)

    def get(self, address, params, headers):
        self._check(address)
        return super().get(address, params, headers)

    def post(self, address, message, headers):
        self._check(address)
        return super().post(address, message, headers)


def _origin(url):
    parts = urlsplit(url)
    return (parts.scheme, parts.hostname, parts.port)


class Run:
    def __init__(self):
        self.failures = 0
        self.histories = []

    def client(self, wsdl_url, base_url, session):
        history = HistoryPlugin()
        self.histories.append(history)
        transport = LocalOnlyTransport(base_url, session=session)
        return Client(wsdl_url, transport=transport, plugins=[history])

    def ok(self, label, detail=""):
        print(f"ok   {label}" + (f": {detail}" if detail else ""), flush=True)

    def fail(self, label, why, exc=None):
        self.failures += 1
        print(f"FAIL {label}: {why}", flush=True)
        if exc is not None:
            traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stdout)
            detail = getattr(exc, "detail", None)
            if detail is not None:
                print("  fault detail:", _xml(detail))
        for i, h in enumerate(self.histories):
            for what, attr in (("last sent", "last_sent"), ("last received", "last_received")):
                try:
                    entry = getattr(h, attr)  # IndexError while the history is empty
                except IndexError:
                    entry = None
                if entry:
                    print(f"  --- client {i}: {what} ---", entry.get("http_headers"))
                    print(_xml(entry["envelope"]))
        sys.stdout.flush()

    def expect_result(self, label, expected, call):
        try:
            got = call()
        except Exception as e:  # noqa: BLE001 - any failure is reported
            self.fail(label, f"unexpected {type(e).__name__}: {e}", e)
            return None
        if got == expected:
            self.ok(label, repr(got))
        else:
            self.fail(label, f"expected {expected!r}, got {got!r}")
        return got

    def expect_fault(self, label, call, contains=None, http_refusal_ok=False):
        try:
            got = call()
        except TransportError as e:
            if http_refusal_ok and e.status_code in (401, 403):
                self.ok(label, f"HTTP {e.status_code}")
            else:
                self.fail(label, f"expected a zeep Fault, got {type(e).__name__}: {e}", e)
            return
        except Fault as f:
            if contains is None or (f.message and contains in f.message):
                self.ok(label, f"Fault code={f.code!r} message={f.message!r}")
            else:
                self.fail(label, f"fault message {f.message!r} does not contain {contains!r}", f)
            return
        except Exception as e:  # noqa: BLE001
            self.fail(label, f"expected a zeep Fault, got {type(e).__name__}: {e}", e)
            return
        self.fail(label, f"expected a zeep Fault, got the answer {got!r}")


def _xml(node):
    try:
        return etree.tostring(node, pretty_print=True).decode()
    except TypeError:
        return repr(node)


def wharf_wsdl(run, base, user, password):
    wsdl_url = f"{base}/wsdl/wharf.wsdl"
    session = requests.Session()
    session.auth = (user, password)
    try:
        client = run.client(wsdl_url, base, session)
        run.ok("a. wharf WSDL loaded", wsdl_url)
    except Exception as e:  # noqa: BLE001
        run.fail("a. wharf WSDL loaded", f"{type(e).__name__}: {e}", e)
        return
    svc = client.service

    run.expect_result(
        "a1. inventoryUpdate 9101 (Basic auth)",
        "Success - Message 9101 Received",
        lambda: svc.inventoryUpdate(
            messageSeqId=9101,
            productQtys={"item": [{"sku": "ZW-A", "qty": 21}]},
            productSeqs={"item": [{"sku": "ZW-A", "seq": 201}]},
        ),
    )
    run.expect_result(
        "a2. shipmentCreate 9102 (Basic auth)",
        "Success - Message 9102 Received",
        lambda: svc.shipmentCreate(
            orderIncrementId="100000124",
            skuQty={"item": [{"sku": "ZW-A", "qty": 1}]},
            courierName="DPD",
            tracks={"item": [{"trackingNumber": "TRK-1"}, {"trackingNumber": "TRK-2"}]},
            messageSeqId=9102,
        ),
    )
    run.expect_fault(
        "a3. inventoryUpdate 9103 with a SKU that has no seq is refused",
        lambda: svc.inventoryUpdate(
            messageSeqId=9103,
            productQtys={"item": [{"sku": "ZW-B", "qty": 1}]},
            productSeqs={"item": [{"sku": "ZW-A", "seq": 202}]},
        ),
        contains="has no sequence id",
    )

    # login + sessionId, without Basic auth. The call is invalid on purpose (nothing is stored):
    # the validation fault proves the session was accepted (a bad session gives fault 5 first).
    anon = run.client(wsdl_url, base, requests.Session())
    run.expect_fault(
        "a4. login with a wrong apiKey is refused",
        lambda: anon.service.login(username=user, apiKey=password + "-wrong"),
    )
    session_id = None
    try:
        session_id = anon.service.login(username=user, apiKey=password)
        if isinstance(session_id, str) and session_id:
            run.ok("a5. login", f"session {session_id[:8]}...")
        else:
            run.fail("a5. login", f"expected a session id, got {session_id!r}")
            session_id = None
    except Exception as e:  # noqa: BLE001
        run.fail("a5. login", f"unexpected {type(e).__name__}: {e}", e)
    if session_id:
        run.expect_fault(
            "a6. inventoryUpdate 9104 with sessionId (no Basic auth) reaches validation",
            lambda: anon.service.inventoryUpdate(
                sessionId=session_id,
                messageSeqId=9104,
                productQtys={"item": [{"sku": "ZW-B", "qty": 1}]},
                productSeqs={"item": [{"sku": "ZW-A", "seq": 203}]},
            ),
            contains="has no sequence id",
        )
    run.expect_fault(
        "a7. inventoryUpdate 9105 without any credentials is refused",
        lambda: anon.service.inventoryUpdate(
            messageSeqId=9105,
            productQtys={"item": [{"sku": "ZW-A", "qty": 999}]},
            productSeqs={"item": [{"sku": "ZW-A", "seq": 299}]},
        ),
        http_refusal_ok=True,
    )


def magento2_wsdl(run, base, user, password):
    wsdl_url = f"{base}/soap/default?wsdl&services={M2_SERVICES}"
    try:
        anon = run.client(wsdl_url, base, requests.Session())
        run.ok("b. Magento 2 WSDL loaded", wsdl_url)
    except Exception as e:  # noqa: BLE001
        run.fail("b. Magento 2 WSDL loaded", f"{type(e).__name__}: {e}", e)
        return

    def bind(client, name):
        return client.bind(f"{name}Service", f"{name}Port")

    token_svc = bind(anon, "integrationAdminTokenServiceV1")
    run.expect_fault(
        "b1. admin token with a wrong password is refused",
        lambda: getattr(token_svc, TOKEN_OP)(username=user, password=password + "-wrong"),
    )
    token = None
    try:
        token = getattr(token_svc, TOKEN_OP)(username=user, password=password)
        if isinstance(token, str) and token:
            run.ok("b2. admin token", f"token {token[:8]}...")
        else:
            run.fail("b2. admin token", f"expected a token string, got {token!r}")
            token = None
    except Exception as e:  # noqa: BLE001
        run.fail("b2. admin token", f"unexpected {type(e).__name__}: {e}", e)
    if token is None:
        return

    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    client = run.client(wsdl_url, base, session)
    inventory = bind(client, "realtimeDespatchOrderFlowInventoryRequestManagementV1")
    shipment = bind(client, "realtimeDespatchOrderFlowShipmentRequestManagementV1")

    run.expect_result(
        "b3. M2 inventory update 9201 (Bearer)",
        "Success - Message 9201 Received",
        lambda: getattr(inventory, INVENTORY_OP)(
            productQtys={"item": [{"sku": "ZM-A", "qty": "31", "source": "default"}]},
            productSeqs={"item": [{"sku": "ZM-A", "seq": "301"}]},
            messageSeqId=9201,
        ),
    )
    run.expect_result(
        "b4. M2 shipment create 9202 (Bearer)",
        "Success - Message 9202 Received",
        lambda: getattr(shipment, SHIPMENT_OP)(
            orderIncrementId="100000125",
            skuQty={"item": [{"sku": "ZM-A", "qty": "1"}]},
            messageSeqId="9202",
            tracks={"item": [{"trackingNumber": "TRK-3"}]},
        ),
    )


def main(argv):
    if len(argv) != 4:
        print("usage: python3 zeep_client.py BASE_URL USER PASSWORD", file=sys.stderr)
        return 2
    base, user, password = argv[1].rstrip("/"), argv[2], argv[3]
    run = Run()
    wharf_wsdl(run, base, user, password)
    magento2_wsdl(run, base, user, password)
    if run.failures:
        print(f"FAILED: {run.failures} step(s)")
        return 1
    print("all zeep steps passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
