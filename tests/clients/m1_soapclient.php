<?php
// Magento 1 style client: PHP's own SoapClient (the SOAP stack OrderFlow-era PHP integrations use)
// against wharf's Magento 1 rpc/encoded WSDL.
//
// Usage: php m1_soapclient.php BASE_URL USER PASSWORD
//   e.g. php m1_soapclient.php http://127.0.0.1:18181 orderflow secret-pass-1
//
// Prints one line per step ("ok ..." or "FAIL ..."); exits 0 only if every step passed. After a
// failing step it prints the last request and response. See README.md for the data it sends.

if ($argc !== 4) {
    fwrite(STDERR, "usage: php m1_soapclient.php BASE_URL USER PASSWORD\n");
    exit(2);
}
[, $base, $user, $password] = $argv;
$base = rtrim($base, '/');
$wsdl = $base . '/api/v2_soap/index/?wsdl=1';

ini_set('default_socket_timeout', '10');
ini_set('soap.wsdl_cache_enabled', '0');

$failures = 0;
$client = null;

function dump_last($client)
{
    if ($client === null) {
        return;
    }
    echo "  --- last request headers ---\n" . $client->__getLastRequestHeaders();
    echo "  --- last request ---\n" . $client->__getLastRequest() . "\n";
    echo "  --- last response headers ---\n" . $client->__getLastResponseHeaders();
    echo "  --- last response ---\n" . $client->__getLastResponse() . "\n";
}

function pass($label, $detail = '')
{
    echo "ok   $label" . ($detail === '' ? '' : ": $detail") . "\n";
}

function fail($label, $why)
{
    global $failures, $client;
    $failures++;
    echo "FAIL $label: $why\n";
    dump_last($client);
}

function describe(Throwable $e)
{
    if ($e instanceof SoapFault) {
        return sprintf('SoapFault faultcode=%s faultstring=%s', var_export($e->faultcode, true), var_export($e->faultstring, true));
    }
    return get_class($e) . ': ' . $e->getMessage();
}

// Runs $call, which must return exactly $expected.
function expect_result($label, $expected, callable $call)
{
    try {
        $got = $call();
    } catch (Throwable $e) {
        fail($label, 'unexpected ' . describe($e));
        return null;
    }
    if ($got === $expected) {
        pass($label, var_export($got, true));
    } else {
        fail($label, 'expected ' . var_export($expected, true) . ', got ' . var_export($got, true));
    }
    return $got;
}

// Runs $call, which must throw a SoapFault accepted by $check (which returns null or a complaint).
function expect_fault($label, callable $call, callable $check)
{
    try {
        $got = $call();
    } catch (SoapFault $f) {
        $complaint = $check($f);
        if ($complaint === null) {
            pass($label, describe($f));
        } else {
            fail($label, $complaint . ' (' . describe($f) . ')');
        }
        return;
    } catch (Throwable $e) {
        fail($label, 'expected a SoapFault, got ' . describe($e));
        return;
    }
    fail($label, 'expected a SoapFault, got the answer ' . var_export($got, true));
}

try {
    $client = new SoapClient($wsdl, [
        'cache_wsdl' => WSDL_CACHE_NONE,
        'trace' => 1,
        'exceptions' => true,
        'connection_timeout' => 10,
    ]);
    pass('WSDL loaded', $wsdl);
} catch (Throwable $e) {
    fail('WSDL loaded', describe($e));
    exit(1);
}

$functions = implode("\n", $client->__getFunctions());
foreach (['login', 'endSession', 'orderflowInventoryMultiUpdate', 'orderflowShipmentCreate'] as $op) {
    if (!preg_match('/\b' . $op . '\(/', $functions)) {
        fail('WSDL operations', "$op missing from:\n$functions");
    }
}

// a. Bad credentials: Magento fault 2 "Access denied."
$denied = function (SoapFault $f) {
    return $f->faultstring === 'Access denied.' ? null : 'faultstring is not exactly "Access denied."';
};
expect_fault('a1. login with an unknown user is refused', fn() => $client->login('nosuchuser', 'wrong-password'), $denied);
expect_fault('a2. login with a wrong password is refused', fn() => $client->login($user, $password . '-wrong'), $denied);

// b. Good credentials: a session id.
$session = null;
try {
    $session = $client->login($user, $password);
    if (is_string($session) && $session !== '') {
        pass('b. login', 'session ' . substr($session, 0, 8) . '...');
    } else {
        fail('b. login', 'expected a session id string, got ' . var_export($session, true));
        $session = null;
    }
} catch (Throwable $e) {
    fail('b. login', 'unexpected ' . describe($e));
}

if ($session !== null) {
    // c. Inventory: the seq array is in a different order than the qty array (pairing is by SKU).
    expect_result(
        'c. orderflowInventoryMultiUpdate 9001',
        'Success - Message 9001 Received',
        fn() => $client->orderflowInventoryMultiUpdate(
            $session,
            [['key' => 'PHP-A', 'value' => 11], ['key' => 'PHP-B', 'value' => 12]],
            [['key' => 'PHP-B', 'value' => 102], ['key' => 'PHP-A', 'value' => 101]],
            9001
        )
    );

    // d. Shipment.
    expect_result(
        'd. orderflowShipmentCreate 9002',
        'Success - Message 9002 Received',
        fn() => $client->orderflowShipmentCreate(
            $session,
            '100000123',
            [['key' => 'PHP-A', 'value' => 2]],
            'Despatched',
            1,
            0,
            'DPD',
            'Next Day',
            'TRACK-PHP-1',
            '2024-05-01',
            9002
        )
    );

    // e. A qty SKU without a sequence id is refused (nothing stored).
    expect_fault(
        'e. inventory with a SKU that has no seq is refused',
        fn() => $client->orderflowInventoryMultiUpdate(
            $session,
            [['key' => 'PHP-C', 'value' => 1]],
            [['key' => 'PHP-A', 'value' => 103]],
            9003
        ),
        fn(SoapFault $f) => str_contains($f->faultstring, 'has no sequence id')
            ? null : 'faultstring does not contain "has no sequence id"'
    );
} else {
    fail('c.-e.', 'skipped: no session');
}

// f. A bogus session id: Magento fault 5.
expect_fault(
    'f. a bogus session id is refused',
    fn() => $client->orderflowInventoryMultiUpdate(
        'bogus-session-' . bin2hex(random_bytes(8)),
        [['key' => 'PHP-A', 'value' => 99]],
        [['key' => 'PHP-A', 'value' => 199]],
        9004
    ),
    function (SoapFault $f) {
        if ((string) $f->faultcode !== '5') {
            return 'faultcode is not 5';
        }
        return $f->faultstring === 'Session expired. Try to relogin.'
            ? null : 'faultstring is not exactly "Session expired. Try to relogin."';
    }
);

if ($failures > 0) {
    echo "FAILED: $failures step(s)\n";
    exit(1);
}
echo "all M1 SoapClient steps passed\n";
exit(0);
