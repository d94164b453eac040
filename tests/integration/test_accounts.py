"""Several users on one real server (`python -m webui --listen`): passwords from the
users file, API keys per user with roles (the official openai client and httpx),
sessions that end at logout and when their user is removed, the single-user data moved
to the first admin, and https with --ssl-certfile/--ssl-keyfile."""
from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import json
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from tests.support import ROOT, free_port, stop_process
from webui.accounts.users import UserBook
from webui.app.flags import check_network_safety
from webui.app.server import clear_text_warning
from webui.config import ServerSettings

PASSWORDS = {"alice": "alice-password", "bob": "bob-password", "carol": "carol-password"}


@contextmanager
def serving_https(tmp: Path, *args: str) -> Iterator[tuple[str, ssl.SSLContext, Path]]:
    """`python -m webui --listen` over https with a fresh self-signed certificate: (URL,
    a context that trusts it, the server's log)."""
    cert, key = self_signed(tmp)
    trusted = ssl.create_default_context(cafile=str(cert))
    port = free_port()
    log_path = tmp / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "webui", "--no-model", "--port", str(port), "--listen",
                                 "--host", "127.0.0.1", "--ssl-certfile", str(cert), "--ssl-keyfile", str(key),
                                 "--models-dir", str(tmp / "models"), *args],
                                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                httpx.get(url + "/healthz", verify=trusted, timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.2)
        yield url, trusted, log_path
    finally:
        stop_process(proc)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """alice (admin) and bob and carol (users), with an API key each; a single-user chat
    left from before accounts; served with --listen over https."""
    data = tmp_path_factory.mktemp("user_data")
    (data / "histories" / "Assistant").mkdir(parents=True)
    (data / "histories" / "Assistant" / "old.json").write_text('{"title": "from before"}')
    book = UserBook(data / "users.json")
    for name, password in PASSWORDS.items():
        book.add(name, password)
    keys = {name: book.new_key(name) for name in PASSWORDS}
    with serving_https(tmp_path_factory.mktemp("tls"), "--user-data", str(data), "--mode", "chat") as (
            url, trusted, log):
        yield Served(url, trusted, log, data, book, keys)


@dataclass
class Served:
    url: str
    trusted: ssl.SSLContext
    log: Path
    data: Path
    book: UserBook
    keys: dict[str, str]

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, verify=self.trusted, timeout=60, **kwargs)


def test_https_serves_and_the_single_user_data_became_the_first_admins(served):
    assert (served.data / "users" / "alice" / "histories" / "Assistant" / "old.json").exists()
    assert not (served.data / "histories").exists()
    # The chat flags (--mode chat) are remembered in the first admin's settings.
    assert "mode: chat" in (served.data / "users" / "alice" / "settings.yaml").read_text()
    assert not (served.data / "settings.yaml").exists()
    log = served.log.read_text()
    assert log.count("it now belongs to user 'alice'") == 1
    assert f"serving on {served.url}" in log and "clear text" not in log
    with pytest.raises(httpx.TransportError):  # plain http on the TLS port is not served
        httpx.get(served.url.replace("https", "http") + "/healthz", timeout=10)


def test_listen_without_tls_says_logins_travel_in_clear_text():
    plain = ServerSettings(listen=True, host="0.0.0.0")
    assert "clear text" in clear_text_warning(plain)
    assert clear_text_warning(dataclasses.replace(plain, ssl_certfile="c.pem", ssl_keyfile="k.pem")) is None
    assert clear_text_warning(ServerSettings()) is None  # this machine only


def test_each_key_is_its_users_and_only_an_admins_key_runs_the_models(served):
    keys = served.keys

    def openai_client(key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=served.url + "/v1", api_key=key, max_retries=0,
                             http_client=httpx.Client(verify=served.trusted))

    for key in (keys["alice"], keys["bob"], "hearth-made-up"):  # any user's key may use the API
        with openai_client(key) as client:
            if key == "hearth-made-up":
                with pytest.raises(openai.AuthenticationError):
                    client.models.list()
            else:
                assert client.models.list().data == []
    with served.client() as http:
        check_roles(http, keys)


def check_roles(http: httpx.Client, keys: dict[str, str]) -> None:
    refused = http.post("/v1/internal/model/load", json={"model_name": "x"},
                        headers={"Authorization": f"Bearer {keys['bob']}"})
    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == ("only an admin's API key may load, unload or change models; "
                                                 "this key belongs to 'bob'")
    for path in ("/v1/internal/model/unload", "/v1/internal/model/lora"):
        assert http.post(path, json={}, headers={"Authorization": f"Bearer {keys['bob']}"}).status_code == 403
    info = http.get("/v1/internal/model/info", headers={"Authorization": f"Bearer {keys['alice']}"})
    assert info.status_code == 200 and info.json()["model_name"] is None


def log_in(http: httpx.Client, name: str, password: str) -> httpx.Response:
    return http.post("/login", data={"username": name, "password": password})


def joins(served: Served, cookies) -> int:
    """The status of a UI request with a body (refused before it is read without a live session)."""
    with served.client(cookies=cookies) as http:
        return http.post("/gradio_api/queue/join", json={"fn_index": 0, "data": [], "session_hash": "s"}).status_code


def test_passwords_log_in_logout_ends_the_session_and_a_removed_user_is_logged_out(served):
    with served.client() as http:
        check_sessions(served, http)


def check_sessions(served: Served, http: httpx.Client) -> None:
    book = served.book
    assert log_in(http, "bob", "alice-password").status_code == 400  # a wrong password
    assert log_in(http, "nobody", "bob-password").status_code == 400
    assert log_in(http, "../x", "bob-password").status_code == 400
    bob = log_in(http, "bob", PASSWORDS["bob"])
    assert bob.status_code == 200 and joins(served, bob.cookies) != 401
    with served.client(cookies=bob.cookies) as as_bob:
        config = as_bob.get("/config")
        assert config.status_code == 200 and config.json().get("username") == "bob"
        as_bob.get("/logout")
    assert joins(served, bob.cookies) == 401

    carol = log_in(http, "carol", PASSWORDS["carol"])
    assert joins(served, carol.cookies) != 401
    book.remove("carol")  # as `hearth users remove carol` would, while her session is live
    assert joins(served, carol.cookies) == 401
    with served.client(cookies=carol.cookies) as as_carol:
        refused = as_carol.post("/gradio_api/queue/join", json={"fn_index": 0, "data": [], "session_hash": "s"})
    assert refused.json() == {"detail": "log in first: no live session (never logged in, logged out, expired, "
                                        "or the user was removed)"}
    assert log_in(http, "carol", PASSWORDS["carol"]).status_code == 400


def self_signed(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.mark.parametrize("given, message", [
    ({"ssl_certfile": "cert.pem"}, "give both --ssl-certfile and --ssl-keyfile, or neither"),
    ({"ssl_certfile": "nope.pem", "ssl_keyfile": "nope.pem"}, "cannot serve https: nope.pem is not a file"),
])
def test_a_half_or_missing_tls_pair_is_one_line(tmp_path, given, message):
    assert check_network_safety(ServerSettings(user_data=str(tmp_path), **given)) == message


def ui_event(served: Served, name: str, api_name: str) -> str:
    """Send the page's event `api_name` as `name` (Gradio's queue, as the page does);
    its first output."""
    with served.client() as http:
        assert log_in(http, name, PASSWORDS[name]).status_code == 200
        return send_event(http, api_name, f"test-{name}")


def send_event(http: httpx.Client, api_name: str, session: str) -> str:
    """The page's event `api_name` on a logged-in client; its first output."""
    config = http.get("/config").json()
    fn = next(d["id"] for d in config["dependencies"] if d.get("api_name") == api_name)
    return run_event(http, fn, [], session)[0]


def run_event(http: httpx.Client, fn: int, data: list, session: str) -> list:
    """Event `fn` with `data` through Gradio's queue, as the page sends it; its outputs."""
    joined = http.post("/gradio_api/queue/join", json={"fn_index": fn, "data": data, "session_hash": session})
    assert joined.status_code == 200, joined.text
    with http.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}) as events:
        for line in events.iter_lines():
            message = json.loads(line[5:]) if line.startswith("data:") else {}
            if message.get("msg") == "process_completed":
                assert message.get("success"), message
                return message["output"]["data"]
    raise AssertionError(f"event {fn} never completed")


# The admin's controls by the element that fires them. Each is sent with its inputs'
# values as the page holds them, an extension switch turned on.
ADMIN_CONTROLS = ("model-load", "model-apply-lora", "download-start", "download-stop", "local-delete", "advisor-run",
                  "advisor-stop", "ext-toggle-documents")


def test_every_admin_control_refuses_a_user_in_one_line(served):
    """LoRA, downloads, deleting model files, the advisor and extension switches: hidden
    from bob, and refused when his client sends their events anyway."""
    with served.client() as http:
        assert log_in(http, "bob", PASSWORDS["bob"]).status_code == 200
        config = http.get("/config").json()
        components = {c["id"]: c for c in config["components"]}
        elem_id = {i: c.get("props", {}).get("elem_id") for i, c in components.items()}
        fired_by = {elem_id.get(target[0]): d for d in config["dependencies"] for target in d["targets"]}
        for control in ADMIN_CONTROLS:
            event = fired_by[control]
            data = [True if elem_id[i] == control else components[i].get("props", {}).get("value")
                    for i in event["inputs"]]
            outputs = json.dumps(run_event(http, event["id"], data, f"admin-{control}"))
            assert "only an admin can" in outputs and "you are logged in as 'bob'" in outputs, (control, outputs)


def test_the_ui_refuses_a_non_admins_model_event_that_the_page_hides(served):
    """A client can send any event the page defines: the handler checks the role itself."""
    assert "only an admin can unload models; you are logged in as 'bob'" in ui_event(served, "bob", "unload")
    assert "only an admin" not in ui_event(served, "alice", "unload")


def test_a_role_change_takes_effect_on_live_sessions_and_keys_at_once(served):
    """No stale role: bob's session and key, made while he was an admin, lose the model
    controls at the next request after `hearth users role bob user`."""
    bob_key = {"Authorization": f"Bearer {served.keys['bob']}"}
    with served.client() as http:
        assert log_in(http, "bob", PASSWORDS["bob"]).status_code == 200
        served.book.set_role("bob", "admin")  # as `hearth users role bob admin` would
        try:
            assert "only an admin" not in send_event(http, "unload", "role-bob")
            assert http.post("/v1/internal/model/unload", headers=bob_key).status_code == 200
            served.book.set_role("bob", "user")
            assert "only an admin can unload models; you are logged in as 'bob'" in send_event(
                http, "unload", "role-bob")
            refused = http.post("/v1/internal/model/unload", headers=bob_key)
            assert refused.status_code == 403 and "this key belongs to 'bob'" in refused.json()["error"]["message"]
        finally:
            served.book.set_role("bob", "user")


def test_a_removed_users_key_and_a_changed_password_end_access_in_one_line(served):
    """dave's key and dave's UI session, then `hearth users remove dave`: the next API call
    is a one-line 401, not a 500 and not served as dave; erin's session ends when her
    password changes; a logout while a removed user's session is in the table works."""
    book = served.book
    book.add("dave", "dave-password")
    book.add("erin", "erin-password")
    dave_key = {"Authorization": f"Bearer {book.new_key('dave')}"}
    with served.client() as http:
        assert http.get("/v1/models", headers=dave_key).status_code == 200
        dave = log_in(http, "dave", "dave-password")
        erin = log_in(http, "erin", "erin-password")
        assert joins(served, dave.cookies) != 401 and joins(served, erin.cookies) != 401
        book.remove("dave")
        with served.client(cookies=erin.cookies) as as_erin:  # Gradio's logout looks up every token, dave's too
            assert as_erin.get("/logout").status_code == 302
        assert joins(served, erin.cookies) == 401
        refused = http.post("/v1/chat/completions", headers=dave_key,
                            json={"messages": [{"role": "user", "content": "Hi"}]})
        assert refused.status_code == 401
        assert refused.json()["error"]["message"] == "the API key is wrong"
        assert joins(served, dave.cookies) == 401
        with served.client(cookies=dave.cookies) as as_dave:  # the page's own GETs: refused or the login, no 500
            for path in ("/", "/config", "/gradio_api/info", "/logout", "/gradio_api/queue/data?session_hash=s"):
                answer = as_dave.get(path)
                assert answer.status_code < 500, (path, answer.status_code)
                assert "dave" not in answer.text, path
        erin = log_in(http, "erin", "erin-password")
        book.set_password("erin", "a-new-erin-password")  # as `hearth users passwd erin` would
        assert joins(served, erin.cookies) == 401
        assert log_in(http, "erin", "a-new-erin-password").status_code == 200
    book.remove("erin")


def test_a_users_file_damaged_by_hand_closes_the_server_in_one_line_and_loses_no_session(served):
    """Never open, never a bare 500: the API answers 503 naming the file, the UI shows its
    login, and once the file is mended a session from before works again."""
    path = served.data / "users.json"
    good = path.read_bytes()
    alice_key = {"Authorization": f"Bearer {served.keys['alice']}"}
    with served.client() as http:
        alice = log_in(http, "alice", PASSWORDS["alice"])
        assert joins(served, alice.cookies) != 401
        try:
            path.write_text('{"users": ')  # a hand edit gone wrong
            refused = http.get("/v1/models", headers=alice_key)
            assert refused.status_code == 503
            message = refused.json()["error"]["message"]
            assert message.startswith("the server cannot check API keys: cannot read the users file")
            assert "\n" not in message
            assert joins(served, alice.cookies) == 401
            assert log_in(http, "bob", PASSWORDS["bob"]).status_code == 400
        finally:
            path.write_bytes(good)
        assert http.get("/v1/models", headers=alice_key).status_code == 200
        assert joins(served, alice.cookies) != 401
