"""Client suites (issue 12): real GraphQL clients against a release quire.

Started by run.sh with the venv's python (gql installed) and QUIRE_BIN set.
Starts its own quire (own port, own SQLite file, QUIRE_MAX_BATCH=3), seeds a
model with published records, makes the keys the clients need, then runs:

  gql      Python gql 4, sync client + RequestsHTTPTransport (its batch
           transport, execute_batch), here in-process;
  apollo   Apollo Client 4 with BatchHttpLink, `node apollo.mjs`;
  browser  a page on another origin in headless Debian chromium driven by
           playwright-core, `node browser.mjs` (skipped without chromium).

Each check prints one line; the exit status is non-zero if any failed.
Checks of the batch-refusal contract (SPEC §3: a whole refused batch is a JSON
array with one error object per operation) are tagged [batch-refusal] so a
failure against an older binary is easy to tell apart.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "hardening"))

from common import Checks, Quire, codes  # noqa: E402

MAX_BATCH = 3
PAGE = 3  # records per page in the pagination checks
RECORDS = 7  # published records of model `article`: pages of 3, 3, 1
NODE_TIMEOUT = 120  # seconds per node script


def seed(q, root):
    """Model `article` with RECORDS published records, model `note` for the
    mutations (so the clients' writes never change the paged list)."""
    for key, fields in (("article", '[{name: "title", type: STRING, required: true},'
                                    ' {name: "n", type: INTEGER}]'),
                        ("note", '[{name: "text", type: STRING, required: true}]')):
        status, _, body = q.gql(root, 'mutation { createModel(input: {key: "%s", name: "%s",'
                                ' fields: %s}) { key } }' % (key, key.title(), fields))
        if status != 200 or body.get("errors"):
            raise RuntimeError(f"createModel {key}: {status} {body}")
    ids = []
    for n in range(RECORDS):
        status, _, body = q.gql(root, "mutation ($d: JSON!) { createRecord(modelKey: \"article\","
                                " data: $d) { id } }", {"d": {"title": f"Article {n}", "n": n}})
        if status != 200 or body.get("errors"):
            raise RuntimeError(f"createRecord: {status} {body}")
        rid = body["data"]["createRecord"]["id"]
        status, _, body = q.gql(root, "mutation ($id: ID!) { publishRecord(id: $id) { id } }",
                                {"id": rid})
        if status != 200 or body.get("errors"):
            raise RuntimeError(f"publishRecord: {status} {body}")
        ids.append(rid)
    return ids


def gql_suite(q, root, limited, ids):
    """Python gql: the sync client over RequestsHTTPTransport."""
    from gql import Client, GraphQLRequest, __version__
    from gql.transport.exceptions import TransportQueryError
    from gql.transport.requests import RequestsHTTPTransport

    c = Checks("gql")
    c.figure("version", __version__)
    url = q.url + "/graphql"

    def client(key):
        transport = RequestsHTTPTransport(url=url, headers={"x-api-key": key}, timeout=15,
                                          retries=0)
        return Client(transport=transport, fetch_schema_from_transport=False,
                      execute_timeout=20), transport

    page_q = ("query Page($m: String!, $limit: Int!, $after: String) {"
              " records(modelKey: $m, limit: $limit, after: $after) {"
              " items { id data } pageInfo { hasNextPage endCursor } } }")

    cl, transport = client(root)
    with cl as session:
        # A query with variables.
        data = session.execute(GraphQLRequest(
            "query One($id: ID!) { record(id: $id) { id modelKey data status } }",
            variable_values={"id": ids[2]}))
        rec = data["record"]
        c.check(rec and rec["id"] == ids[2] and rec["data"]["n"] == 2
                and rec["status"] == "PUBLISHED",
                f"query with variables: record(id: $id) gave the record ({rec and rec['data']})")

        # A mutation (with variables), its result read back.
        data = session.execute(GraphQLRequest(
            "mutation Add($d: JSON!) { createRecord(modelKey: \"note\", data: $d) { id version"
            " data } }", variable_values={"d": {"text": "from gql"}}))
        made = data["createRecord"]
        c.check(made["data"] == {"text": "from gql"} and made["version"] >= 1,
                f"mutation: createRecord returned id {made['id']} version {made['version']}")

        # Cursor pagination through every page.
        seen, after, pages = [], None, 0
        while pages < RECORDS + 2:
            data = session.execute(GraphQLRequest(page_q, variable_values={
                "m": "article", "limit": PAGE, "after": after}))
            page = data["records"]
            pages += 1
            seen += [i["id"] for i in page["items"]]
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]
        c.check(sorted(seen) == sorted(ids) and len(seen) == RECORDS
                and pages == -(-RECORDS // PAGE),
                f"cursor pagination: {pages} pages of <= {PAGE} gave all {len(seen)} records once")

        # A batch within the limit: one answer per operation, in order.
        reqs = [GraphQLRequest("query One($id: ID!) { record(id: $id) { id } }",
                               variable_values={"id": i}) for i in ids[:MAX_BATCH]]
        answers = session.execute_batch(reqs)
        c.check([a["record"]["id"] for a in answers] == ids[:MAX_BATCH],
                f"execute_batch of {MAX_BATCH}: one answer per operation, in order")

    # A refused batch (over QUIRE_MAX_BATCH), mapped back to its operations. The
    # transport's execute_batch gives every operation its ExecutionResult;
    # Client.execute_batch raises TransportQueryError with the first one's errors.
    over = [GraphQLRequest("query One($id: ID!) { record(id: $id) { id } }",
                           variable_values={"id": i}) for i in ids[:MAX_BATCH + 1]]
    cl, transport = client(root)
    with cl:
        try:
            results = transport.execute_batch(over)
            got = [codes({"errors": r.errors}) for r in results]
            c.check(got == [["BAD_REQUEST"]] * len(over),
                    f"[batch-refusal] batch of {len(over)} over QUIRE_MAX_BATCH={MAX_BATCH}: one"
                    f" error per operation, codes {got}")
        except Exception as e:  # noqa: BLE001 - any failure is the check failing
            c.check(False, f"[batch-refusal] batch of {len(over)} over QUIRE_MAX_BATCH="
                           f"{MAX_BATCH}: gql raised {type(e).__name__}: {str(e)[:160]}")
    cl, transport = client(root)
    with cl as session:
        try:
            session.execute_batch(over)
            c.check(False, "[batch-refusal] Client.execute_batch of a refused batch raised nothing")
        except TransportQueryError as e:
            c.check(bool(codes({"errors": e.errors})) and all(codes({"errors": e.errors})),
                    f"[batch-refusal] Client.execute_batch raised TransportQueryError with code"
                    f" {codes({'errors': e.errors})}")
        except Exception as e:  # noqa: BLE001
            c.check(False, f"[batch-refusal] Client.execute_batch raised {type(e).__name__}"
                           f" (not TransportQueryError): {str(e)[:160]}")

    # A 429 with its Retry-After: a key with a budget of 3 per hour.
    cl, transport = client(limited)
    one = GraphQLRequest("query { viewer { key { name } } }")
    with cl as session:
        remaining = []
        for _ in range(3):
            session.execute(one)
            remaining.append(transport.response_headers.get("X-RateLimit-Remaining"))
        c.check(remaining == ["2", "1", "0"],
                f"X-RateLimit-Remaining read from transport.response_headers: {remaining}")
        try:
            session.execute(one)
            c.check(False, "4th request over a budget of 3 was not refused")
        except TransportQueryError as e:
            ra = transport.response_headers.get("Retry-After")
            c.check(codes({"errors": e.errors}) == ["RATE_LIMITED"] and ra is not None
                    and ra.isdigit() and int(ra) >= 1,
                    f"429 surfaced: TransportQueryError {codes({'errors': e.errors})},"
                    f" Retry-After: {ra}")
        try:
            results = transport.execute_batch([one, one])
            got = [codes({"errors": r.errors}) for r in results]
            ra = transport.response_headers.get("Retry-After")
            c.check(got == [["RATE_LIMITED"], ["RATE_LIMITED"]] and ra and int(ra) >= 1,
                    f"[batch-refusal] 429 for a batch of 2: one error per operation {got},"
                    f" Retry-After: {ra}")
        except Exception as e:  # noqa: BLE001
            c.check(False, f"[batch-refusal] 429 for a batch of 2: gql raised"
                           f" {type(e).__name__}: {str(e)[:160]}")
    return c.failed


def node_suite(script, env, timeout=NODE_TIMEOUT):
    print(f"== {script}", flush=True)
    try:
        r = subprocess.run(["node", os.path.join(HERE, script)], cwd=HERE,
                           env=dict(os.environ, **env), timeout=timeout)
        return r.returncode
    except subprocess.TimeoutExpired:
        print(f"FAIL {script}: no result within {timeout} s", flush=True)
        return 1


def main():
    # `timeout` in run.sh sends SIGTERM: unwind so `finally` stops quire.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    binary = os.environ.get("QUIRE_BIN")
    if not binary:
        sys.exit("QUIRE_BIN is not set")
    q = Quire(binary, env={"QUIRE_MAX_BATCH": str(MAX_BATCH)},
              workdir=tempfile.mkdtemp(prefix="quire-clients-")).start()
    failed = []
    try:
        root = q.root
        if not root:
            raise RuntimeError("no bootstrap key on quire's stdout")
        t0 = time.time()
        ids = seed(q, root)
        # TEST keys come from the API; the pk_live_ key for the browser page from
        # the operator command (TEST keys make TEST keys only).
        limited_gql = q.new_key(root, type_="PUBLIC", mode="TEST", limit=3)
        limited_apollo = q.new_key(root, type_="PUBLIC", mode="TEST", limit=3)
        live_public = q.admin_key(type_="public", mode="live", scopes="records:read")
        print(f"quire up at {q.url}; seeded {RECORDS} published records and 3 keys in"
              f" {time.time() - t0:.1f} s", flush=True)

        print("== gql (Python)", flush=True)
        if gql_suite(q, root, limited_gql, ids):
            failed.append("gql")

        env = {"QUIRE_URL": q.url, "QUIRE_ROOT_KEY": root, "QUIRE_LIMITED_KEY": limited_apollo,
               "QUIRE_LIVE_PUBLIC_KEY": live_public, "QUIRE_RECORD_IDS": json.dumps(ids),
               "QUIRE_MAX_BATCH": str(MAX_BATCH), "CLIENTS_PAGE": str(PAGE)}
        if node_suite("apollo.mjs", env):
            failed.append("apollo")
        if os.environ.get("CLIENTS_SKIP_BROWSER"):
            print(f"skipped: browser test ({os.environ['CLIENTS_SKIP_BROWSER']})", flush=True)
        elif node_suite("browser.mjs", env):
            failed.append("browser")
    finally:
        q.stop()
    if failed:
        print(f"client suites: FAILED: {', '.join(failed)} (quire's log: {q.log_path})", flush=True)
        sys.exit(1)
    shutil.rmtree(q.dir, ignore_errors=True)
    print("client suites: all passed", flush=True)


if __name__ == "__main__":
    main()
