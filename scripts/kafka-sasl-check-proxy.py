#!/usr/bin/env python3
"""A Kafka-protocol-aware TCP proxy that checks SASL/PLAIN credentials, for tests.

It sits in front of a broker that accepts any SASL user and password (noida-db) and makes wrong
credentials observable, the way Apache Kafka or Confluent Cloud reject them:

    client --> this proxy (--listen-unix PATH or --listen HOST:PORT) --> broker (--upstream HOST:PORT)

Every request is forwarded unchanged, except SaslAuthenticate (api key 36): its PLAIN token
(authzid NUL username NUL password) is compared with the expected username and password. If they
match, the request is forwarded too. If not, the broker never sees it: the proxy answers a
SaslAuthenticateResponse with error_code 58 (SASL_AUTHENTICATION_FAILED) and the error message
"Authentication failed: Invalid username or password", in the request's version (v0 and v1 are
non-flexible, v2 is flexible: compact strings and tagged fields), and then closes the connection.
librdkafka 2.12 sends v1 (it asks for at most v1; noida-db offers 0-2).

Only the PLAIN mechanism is understood: another mechanism's tokens (SCRAM, ...) do not parse as PLAIN and
are refused. A client that uses the pre-KIP-152 flow (SaslHandshake v0, then the raw PLAIN token in a
length-prefixed frame) is checked as well; a wrong token then just closes the connection, as
Kafka does.

The expected password is read from the environment variable named by --password-env (default
KAFKA_SASL_CHECK_PASSWORD), so it does not show in `ps`; --password works too. Passwords are
never logged. Python 3 standard library only.

    KAFKA_SASL_CHECK_PASSWORD=pedidos-secret \\
        kafka-sasl-check-proxy.py --listen-unix /tmp/k/auth.sock --upstream 127.0.0.1:9093 --user pedidos
"""

import argparse
import asyncio
import hmac
import os
import signal
import struct
import sys
import time

SASL_HANDSHAKE = 17
SASL_AUTHENTICATE = 36
SASL_AUTHENTICATION_FAILED = 58
INVALID_CREDENTIALS = "Authentication failed: Invalid username or password"
# Kafka's own default socket.request.max.bytes is 100 MiB; anything larger is not Kafka framing.
MAX_FRAME = 100 * 1024 * 1024
# How long to wait for the broker's answers to earlier requests before injecting a response, and
# for the client to hang up after a rejection.
GRACE = 5.0


def log(message):
    stamp = time.strftime("%H:%M:%S")
    print(f"{stamp} kafka-sasl-check-proxy: {message}", file=sys.stderr, flush=True)


class ParseError(Exception):
    pass


class Buffer:
    """A cursor over a request, with Kafka's primitive types."""

    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, n):
        if n < 0 or self.pos + n > len(self.data):
            raise ParseError(f"truncated: wanted {n} bytes at offset {self.pos} of {len(self.data)}")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def int16(self):
        return struct.unpack(">h", self.take(2))[0]

    def int32(self):
        return struct.unpack(">i", self.take(4))[0]

    def uvarint(self):
        value = 0
        for shift in range(0, 35, 7):
            byte = self.take(1)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
        raise ParseError("unsigned varint longer than 5 bytes")

    def nullable_string(self):  # int16 length, -1 = null (client_id, in every header version)
        n = self.int16()
        return None if n < 0 else self.take(n)

    def tagged_fields(self):
        for _ in range(self.uvarint()):
            self.uvarint()  # tag
            self.take(self.uvarint())  # size, then the field

    def bytes_(self):  # int32 length
        n = self.int32()
        if n < 0:
            raise ParseError("null auth_bytes")
        return self.take(n)

    def compact_bytes(self):  # unsigned varint length + 1, 0 = null
        n = self.uvarint()
        if n == 0:
            raise ParseError("null auth_bytes")
        return self.take(n - 1)


def uvarint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def parse_sasl_authenticate(frame):
    """(api_version, correlation_id, auth_bytes) of a SaslAuthenticate request frame."""
    buf = Buffer(frame)
    api_key, api_version, correlation_id = buf.int16(), buf.int16(), buf.int32()
    assert api_key == SASL_AUTHENTICATE
    buf.nullable_string()  # client_id
    if api_version >= 2:  # flexible: request header v2 has tagged fields, body is compact
        buf.tagged_fields()
        auth = buf.compact_bytes()
        buf.tagged_fields()
    else:
        auth = buf.bytes_()
    return api_version, correlation_id, auth


def sasl_authenticate_error(api_version, correlation_id, message):
    """A SaslAuthenticateResponse frame (length prefix included) carrying error 58."""
    text = message.encode()
    if api_version >= 2:
        # response header v1: correlation_id, tagged fields; body: error_code,
        # error_message (COMPACT_NULLABLE_STRING), auth_bytes (COMPACT_BYTES),
        # session_lifetime_ms (INT64), tagged fields
        body = (struct.pack(">i", correlation_id) + b"\x00"
                + struct.pack(">h", SASL_AUTHENTICATION_FAILED)
                + uvarint(len(text) + 1) + text
                + uvarint(1)
                + struct.pack(">q", 0)
                + b"\x00")
    else:
        # response header v0: correlation_id; body: error_code, error_message (NULLABLE_STRING),
        # auth_bytes (BYTES), and from v1 session_lifetime_ms (INT64)
        body = (struct.pack(">i", correlation_id)
                + struct.pack(">h", SASL_AUTHENTICATION_FAILED)
                + struct.pack(">h", len(text)) + text
                + struct.pack(">i", 0))
        if api_version >= 1:
            body += struct.pack(">q", 0)
    return struct.pack(">i", len(body)) + body


def check_plain(token, user, password):
    """None if the PLAIN token carries the expected credentials, else why not (no secrets)."""
    parts = token.split(b"\x00")
    if len(parts) != 3:
        return f"malformed PLAIN token ({len(parts)} fields, expected 3)"
    authzid, username, given = parts
    if authzid and authzid != username:
        return "authorization id differs from the username"
    user_ok = hmac.compare_digest(username, user)
    password_ok = hmac.compare_digest(given, password)
    if user_ok and password_ok:
        return None
    name = username.decode("utf-8", "replace")
    if not user_ok:
        return f"unknown user {name!r}"
    return f"wrong password for user {name!r}"


async def read_frame(reader):
    """The next length-prefixed frame's payload, or None at end of stream."""
    try:
        head = await reader.readexactly(4)
    except asyncio.IncompleteReadError as e:
        if e.partial:
            raise ParseError("stream ended inside a frame length")
        return None
    (size,) = struct.unpack(">i", head)
    if size < 0 or size > MAX_FRAME:
        raise ParseError(f"frame length {size} is not Kafka framing")
    try:
        return await reader.readexactly(size)
    except asyncio.IncompleteReadError:
        raise ParseError("stream ended inside a frame")


class Connection:
    counter = 0

    def __init__(self, proxy, client_reader, client_writer):
        Connection.counter += 1
        self.id = Connection.counter
        self.proxy = proxy
        self.client_reader = client_reader
        self.client_writer = client_writer
        self.upstream_writer = None
        # Requests forwarded minus responses seen: an injected response must not overtake the
        # broker's answers to earlier requests.
        self.outstanding = 0
        self.answered = asyncio.Condition()

    async def run(self):
        try:
            up_reader, self.upstream_writer = await asyncio.open_connection(*self.proxy.upstream)
        except OSError as e:
            log(f"conn {self.id}: cannot reach the broker at {self.proxy.upstream_text}: {e}")
            self.client_writer.close()
            return
        downstream = asyncio.ensure_future(self.pump_responses(up_reader))
        try:
            await self.pump_requests()
        except (ConnectionError, ParseError) as e:
            log(f"conn {self.id}: client side: {e}")
        finally:
            downstream.cancel()
            for w in (self.upstream_writer, self.client_writer):
                w.close()

    async def pump_responses(self, up_reader):
        try:
            while True:
                frame = await read_frame(up_reader)
                if frame is None:
                    break
                self.client_writer.write(struct.pack(">i", len(frame)) + frame)
                await self.client_writer.drain()
                async with self.answered:
                    self.outstanding -= 1
                    self.answered.notify_all()
        except (ConnectionError, ParseError) as e:
            log(f"conn {self.id}: broker side: {e}")
        finally:
            # the broker hung up: so does the client's side
            self.client_writer.close()

    async def forward(self, frame, expect_response=True):
        if expect_response:
            async with self.answered:
                self.outstanding += 1
        self.upstream_writer.write(struct.pack(">i", len(frame)) + frame)
        await self.upstream_writer.drain()

    async def pump_requests(self):
        legacy_token_next = False
        while True:
            frame = await read_frame(self.client_reader)
            if frame is None:
                return
            if legacy_token_next:
                # SaslHandshake v0 flow: this frame is the raw PLAIN token, not a request.
                legacy_token_next = False
                why = check_plain(frame, self.proxy.user, self.proxy.password)
                if why is not None:
                    log(f"conn {self.id}: rejected raw SASL/PLAIN token (handshake v0): {why}; closing")
                    return
                log(f"conn {self.id}: accepted raw SASL/PLAIN token (handshake v0)")
                await self.forward(frame)
                continue
            if len(frame) < 4:
                raise ParseError("request shorter than its header")
            api_key, api_version = struct.unpack(">hh", frame[:4])
            if api_key == SASL_HANDSHAKE and api_version == 0:
                legacy_token_next = True
            if api_key != SASL_AUTHENTICATE:
                await self.forward(frame)
                continue
            try:
                version, correlation_id, token = parse_sasl_authenticate(frame)
            except ParseError as e:
                log(f"conn {self.id}: cannot parse SaslAuthenticate v{api_version}: {e}; closing")
                return
            if version > 2:
                log(f"conn {self.id}: SaslAuthenticate v{version} is not supported (0-2); closing")
                return
            why = check_plain(token, self.proxy.user, self.proxy.password)
            if why is None:
                log(f"conn {self.id}: SaslAuthenticate v{version}: accepted user {self.proxy.user_text!r}")
                await self.forward(frame)
                continue
            log(f"conn {self.id}: SaslAuthenticate v{version}: rejected, {why}; "
                f"answering error {SASL_AUTHENTICATION_FAILED} and closing")
            await self.reject(version, correlation_id)
            return

    async def reject(self, version, correlation_id):
        async with self.answered:
            try:
                await asyncio.wait_for(self.answered.wait_for(lambda: self.outstanding <= 0), GRACE)
            except asyncio.TimeoutError:
                log(f"conn {self.id}: broker still owes {self.outstanding} responses; answering anyway")
        self.client_writer.write(sasl_authenticate_error(version, correlation_id, INVALID_CREDENTIALS))
        await self.client_writer.drain()
        # Half-close, then let the client hang up first (closing a Unix socket with unread data
        # would reset the connection and could lose the response).
        if self.client_writer.can_write_eof():
            self.client_writer.write_eof()
        try:
            await asyncio.wait_for(self.client_reader.read(), GRACE)
        except (asyncio.TimeoutError, ConnectionError):
            pass


# ---------------------------------------------------------------------------------------------
# --probe: a minimal client, to check a running proxy end to end (through TLS when --cafile).

def probe_once(address, cafile, user, password, version, correlation_id=1):
    """The SaslAuthenticate error code (0 = accepted) and message from one fresh connection."""
    import socket
    import ssl

    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    sock = socket.create_connection((host, int(port)), timeout=GRACE)
    if cafile:
        context = ssl.create_default_context(cafile=cafile)
        sock = context.wrap_socket(sock, server_hostname=host)
    with sock:
        def call(frame):
            sock.sendall(struct.pack(">i", len(frame)) + frame)
            head = b""
            while len(head) < 4:
                chunk = sock.recv(4 - len(head))
                if not chunk:
                    raise ConnectionError("connection closed before a response")
                head += chunk
            (size,) = struct.unpack(">i", head)
            data = b""
            while len(data) < size:
                chunk = sock.recv(size - len(data))
                if not chunk:
                    raise ConnectionError("connection closed inside a response")
                data += chunk
            return Buffer(data)

        client_id = b"sasl-check-probe"
        header = lambda key, ver, cid: (struct.pack(">hhi", key, ver, cid)
                                        + struct.pack(">h", len(client_id)) + client_id)
        # SaslHandshake v1, mechanism PLAIN
        r = call(header(SASL_HANDSHAKE, 1, correlation_id) + struct.pack(">h", 5) + b"PLAIN")
        r.int32()
        error = r.int16()
        if error:
            return error, f"SaslHandshake error {error}"
        token = b"\x00" + user.encode() + b"\x00" + password.encode()
        if version >= 2:
            body = (header(SASL_AUTHENTICATE, version, correlation_id + 1) + b"\x00"
                    + uvarint(len(token) + 1) + token + b"\x00")
        else:
            body = (header(SASL_AUTHENTICATE, version, correlation_id + 1)
                    + struct.pack(">i", len(token)) + token)
        r = call(body)
        if r.int32() != correlation_id + 1:
            raise ParseError("response to another request")
        if version >= 2:
            r.tagged_fields()
        error = r.int16()
        if version >= 2:
            n = r.uvarint()
            message = None if n == 0 else r.take(n - 1).decode()
            r.compact_bytes()
            r.take(8)
            r.tagged_fields()
        else:
            message = r.nullable_string()
            message = None if message is None else message.decode()
            r.bytes_()
            if version >= 1:
                r.take(8)
        if r.pos != len(r.data):
            raise ParseError(f"{len(r.data) - r.pos} unexpected bytes after the response")
        return error, message


def probe(args, password):
    """Exit 0 if every version was accepted, 3 if every one was refused with error 58."""
    outcomes = []
    for version in args.versions:
        try:
            error, message = probe_once(args.probe, args.cafile, args.user, password, version)
        except (OSError, ParseError) as e:
            log(f"probe v{version}: {type(e).__name__}: {e}")
            return 1
        log(f"probe SaslAuthenticate v{version} user {args.user!r}: error_code={error} message={message!r}")
        outcomes.append(error)
    if all(e == 0 for e in outcomes):
        return 0
    if all(e == SASL_AUTHENTICATION_FAILED for e in outcomes):
        return 3
    return 1


class Proxy:
    def __init__(self, upstream, user, password):
        host, _, port = upstream.rpartition(":")
        self.upstream = (host.strip("[]"), int(port))
        self.upstream_text = upstream
        self.user = user.encode()
        self.user_text = user
        self.password = password.encode()

    async def handle(self, reader, writer):
        await Connection(self, reader, writer).run()


async def main_async(args, password):
    proxy = Proxy(args.upstream, args.user, password)
    if args.listen_unix:
        try:
            os.unlink(args.listen_unix)
        except FileNotFoundError:
            pass
        server = await asyncio.start_unix_server(proxy.handle, path=args.listen_unix)
        os.chmod(args.listen_unix, 0o600)
        where = args.listen_unix
    else:
        host, _, port = args.listen.rpartition(":")
        server = await asyncio.start_server(proxy.handle, host.strip("[]"), int(port))
        where = args.listen
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    log(f"listening on {where}, forwarding to {args.upstream}, SASL/PLAIN user {args.user!r} "
        "(password checked)")
    async with server:
        await stop
    log("stopped")


def main():
    parser = argparse.ArgumentParser(
        description="Kafka proxy that rejects wrong SASL/PLAIN credentials (error 58).")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--listen-unix", metavar="PATH", help="listen on this Unix socket")
    where.add_argument("--listen", metavar="HOST:PORT", help="listen on this TCP address")
    where.add_argument("--probe", metavar="HOST:PORT",
                       help="instead of proxying, authenticate once per --versions against "
                            "HOST:PORT; exit 0 if accepted, 3 if refused with error 58, else 1")
    parser.add_argument("--upstream", metavar="HOST:PORT",
                        help="the broker (PLAINTEXT or SASL_PLAINTEXT listener)")
    parser.add_argument("--cafile", help="--probe through TLS, verifying the server with this CA")
    parser.add_argument("--versions", default="1",
                        type=lambda v: [int(x) for x in v.split(",")],
                        help="--probe: SaslAuthenticate versions to try, e.g. 0,1,2 (default 1)")
    parser.add_argument("--user", required=True, help="the expected SASL/PLAIN username")
    parser.add_argument("--password", help="the expected password (prefer --password-env)")
    parser.add_argument("--password-env", default="KAFKA_SASL_CHECK_PASSWORD", metavar="VAR",
                        help="environment variable holding the expected password "
                             "(default KAFKA_SASL_CHECK_PASSWORD)")
    args = parser.parse_args()
    password = args.password if args.password is not None else os.environ.get(args.password_env)
    if not password:
        parser.error(f"no password: set {args.password_env} or pass --password")
    if args.probe:
        sys.exit(probe(args, password))
    if not args.upstream:
        parser.error("--upstream is required (except with --probe)")
    try:
        asyncio.run(main_async(args, password))
    except OSError as e:
        log(f"error: {e}")
        sys.exit(1)


if __name__ == "__main__":
    main()
