// Apollo Client 4 with BatchHttpLink against a running quire (issue 12).
// Started by suite.py with QUIRE_URL, QUIRE_ROOT_KEY, QUIRE_LIMITED_KEY (budget
// of 3 per hour), QUIRE_RECORD_IDS (published `article` records, JSON),
// QUIRE_MAX_BATCH and CLIENTS_PAGE. Prints one line per check; exits 1 if any
// failed. Checks of the batch-refusal contract are tagged [batch-refusal].
import { ApolloClient, ApolloLink, InMemoryCache, gql, version } from "@apollo/client";
import { CombinedGraphQLErrors } from "@apollo/client/errors";
import { BatchHttpLink } from "@apollo/client/link/batch-http";
import { tap } from "rxjs";

const URL = process.env.QUIRE_URL + "/graphql";
const IDS = JSON.parse(process.env.QUIRE_RECORD_IDS);
const MAX_BATCH = Number(process.env.QUIRE_MAX_BATCH);
const PAGE = Number(process.env.CLIENTS_PAGE);

const failed = [];
function check(ok, what) {
  console.log(`  ${ok ? "ok  " : "FAIL"} apollo: ${what}`);
  if (!ok) failed.push(what);
}
const codesOf = (error) =>
  CombinedGraphQLErrors.is(error) ? error.errors.map((e) => e.extensions?.code ?? null) : null;
const describe = (error) =>
  error ? `${error.name}: ${String(error.message).slice(0, 140)}` : "no error";

// Every response's headers, as an app reads them: BatchHttpLink puts the fetch
// Response in each operation's context.
function makeClient(key) {
  const seen = [];
  const headersLink = new ApolloLink((operation, forward) => {
    const remember = () => {
      const { response } = operation.getContext();
      if (response) seen.push({ status: response.status, headers: response.headers });
    };
    return forward(operation).pipe(tap({ next: remember, error: remember }));
  });
  const client = new ApolloClient({
    link: ApolloLink.from([
      headersLink,
      new BatchHttpLink({
        uri: URL,
        headers: { "x-api-key": key },
        batchMax: 10,
        batchInterval: 20,
        // Every request bounded in time, still cancellable by Apollo.
        fetch: (uri, options) =>
          fetch(uri, {
            ...options,
            signal: options.signal
              ? AbortSignal.any([options.signal, AbortSignal.timeout(15000)])
              : AbortSignal.timeout(15000),
          }),
      }),
    ]),
    cache: new InMemoryCache(),
    defaultOptions: { query: { fetchPolicy: "no-cache", errorPolicy: "all" } },
  });
  return { client, seen };
}

const ONE = gql`
  query One($id: ID!) {
    record(id: $id) { id modelKey data status }
  }
`;
const PAGE_Q = gql`
  query Page($m: String!, $limit: Int!, $after: String) {
    records(modelKey: $m, limit: $limit, after: $after) {
      items { id data }
      pageInfo { hasNextPage endCursor }
    }
  }
`;
const ADD = gql`
  mutation Add($d: JSON!) {
    createRecord(modelKey: "note", data: $d) { id version data }
  }
`;

async function main() {
  console.log(`  apollo: version = ${version}`);
  const { client, seen } = makeClient(process.env.QUIRE_ROOT_KEY);

  // A query with variables.
  {
    const { data, error } = await client.query({ query: ONE, variables: { id: IDS[2] } });
    const rec = data?.record;
    check(
      !error && rec?.id === IDS[2] && rec.data.n === 2 && rec.status === "PUBLISHED",
      `query with variables: record(id: $id) gave ${JSON.stringify(rec?.data)} (${describe(error)})`,
    );
  }

  // A mutation with variables.
  {
    const { data, error } = await client.mutate({
      mutation: ADD,
      variables: { d: { text: "from apollo" } },
      errorPolicy: "all",
    });
    const made = data?.createRecord;
    check(
      !error && made?.data?.text === "from apollo" && made.version >= 1,
      `mutation: createRecord returned id ${made?.id} version ${made?.version} (${describe(error)})`,
    );
  }

  // Cursor pagination through every page.
  {
    const ids = [];
    let after = null;
    let pages = 0;
    let error;
    while (pages < IDS.length + 2) {
      const r = await client.query({ query: PAGE_Q, variables: { m: "article", limit: PAGE, after } });
      error = r.error;
      if (error) break;
      pages += 1;
      ids.push(...r.data.records.items.map((i) => i.id));
      if (!r.data.records.pageInfo.hasNextPage) break;
      after = r.data.records.pageInfo.endCursor;
    }
    const want = [...IDS].sort();
    check(
      !error && JSON.stringify([...ids].sort()) === JSON.stringify(want) &&
        pages === Math.ceil(IDS.length / PAGE),
      `cursor pagination: ${pages} pages of <= ${PAGE} gave ${ids.length} of ${IDS.length} records (${describe(error)})`,
    );
  }

  // Operations issued together go out as one batch, one answer each.
  {
    seen.length = 0;
    const rs = await Promise.all(
      IDS.slice(0, MAX_BATCH).map((id) => client.query({ query: ONE, variables: { id } })),
    );
    check(
      rs.every((r, i) => !r.error && r.data?.record?.id === IDS[i]) && seen.length === MAX_BATCH &&
        new Set(seen.map((s) => s.headers)).size === 1,
      `batch of ${MAX_BATCH} in one request: every operation got its own record`,
    );
  }

  // A refused batch (over QUIRE_MAX_BATCH): each operation gets its own error.
  {
    seen.length = 0;
    const n = MAX_BATCH + 1;
    const rs = await Promise.all(
      IDS.slice(0, n).map((id) => client.query({ query: ONE, variables: { id } })),
    );
    const codes = rs.map((r) => codesOf(r.error));
    const status = seen[0]?.status;
    check(
      codes.every((c) => JSON.stringify(c) === '["BAD_REQUEST"]') && status === 400,
      `[batch-refusal] batch of ${n} over QUIRE_MAX_BATCH=${MAX_BATCH} (HTTP ${status}): per-operation codes ${JSON.stringify(codes)}` +
        (codes.some((c) => c === null) ? ` (first error: ${describe(rs[0].error)})` : ""),
    );
  }

  // A 429 whose Retry-After the app reads: a key with a budget of 3 per hour.
  {
    const { client: limited, seen: lseen } = makeClient(process.env.QUIRE_LIMITED_KEY);
    const two = () =>
      Promise.all(IDS.slice(0, 2).map((id) => limited.query({ query: ONE, variables: { id } })));
    const first = await two(); // costs 2 of 3
    const remaining = lseen[0]?.headers.get("x-ratelimit-remaining");
    check(
      first.every((r, i) => !r.error && r.data?.record?.id === IDS[i]) && remaining === "1",
      `batch of 2 within budget: both answered, X-RateLimit-Remaining: ${remaining}`,
    );
    lseen.length = 0;
    const second = await two(); // would cost 2, 1 left: all or nothing, refused
    const status = lseen[0]?.status;
    const retryAfter = lseen[0]?.headers.get("retry-after");
    check(
      status === 429 && /^\d+$/.test(retryAfter ?? "") && Number(retryAfter) >= 1,
      `429 read from the response in the operation context: HTTP ${status}, Retry-After: ${retryAfter}`,
    );
    const codes = second.map((r) => codesOf(r.error));
    check(
      codes.every((c) => JSON.stringify(c) === '["RATE_LIMITED"]'),
      `[batch-refusal] 429 for a batch of 2: per-operation codes ${JSON.stringify(codes)}` +
        (codes.some((c) => c === null) ? ` (first error: ${describe(second[0].error)})` : ""),
    );
  }
}

try {
  await main();
} catch (e) {
  check(false, `unexpected ${e?.stack ?? e}`);
}
console.log(failed.length ? `apollo: ${failed.length} check(s) failed` : "apollo: all checks passed");
process.exit(failed.length ? 1 : 0);
