"""The search mixes of the load harness (harness.py --search).

Varied text for the seeded `page` records: titles and bodies drawn from a
vocabulary of 6,000 words (common English words, then made-up ones for the
long tail) with Zipf frequencies, as natural text has. Queries are built
from the words of seeded records (ranks 30-3,000: what people type into a
search box, not stop words), so they find something:

- two words from one record (`search: two words`);
- one word of 6 or more characters with one letter changed (`search: one
  typo`);

both on the quire that has no read cache, against `records(limit: 10)` on
the same server (its "cache off" row). createRecord is measured twice on
the cached server with the same realistic text: into `note` (STRING and
TEXT fields: indexed) and into `note_raw` (the same values in JSON fields,
which search does not index): the A/B of what the index adds to a write.
"""
import bisect
import random

COMMON = """the of and to in is was for on that with as by at from his it an were are which this be
also or had first one their its new after who they two her she been other when there all during into
school would time may year city only over some world most between state years three where many these
later city university known national under while called about made such being high new part both war
since including well area team house film south north before music season through game family work
back around life water group river government history century people american series members second
home early several album league based following public four land major law place club population town
station church village long found around served company around days main built right power road island
during army large west still system small last number park began final best named party county county
often side play light field death species children became until without center show book local night
born line order held form given women english named great against around general song band around
court building region king point along garden lake bridge valley coast harbour market forest mountain
castle tower museum library theatre temple palace bicycle restaurant kitchen recipe garden flower
winter summer autumn spring morning evening journey travel village meadow ocean island window letter
story paper camera picture painting colour yellow orange purple silver golden wooden stone glass
bottle coffee bread cheese butter honey apple lemon cherry tomato potato onion pepper salt sugar
chocolate dinner breakfast lunch table chair bed door floor wall roof street avenue square corner
station airport train ship plane engine machine computer phone screen keyboard music guitar piano
violin singer dancer actor writer painter teacher student doctor nurse farmer baker butcher sailor
soldier captain pilot driver artist author poet scientist engineer lawyer judge mayor president
minister bishop priest monk knight prince princess queen emperor empire kingdom republic nation
country province district border frontier desert jungle canyon glacier volcano earthquake storm
thunder lightning rainbow cloud rain snow wind sunshine shadow darkness silence memory dream
friendship adventure mystery secret treasure legend myth history science nature animal horse
dog cat bird eagle falcon owl wolf fox bear lion tiger elephant whale dolphin shark salmon trout
butterfly spider beetle honeybee ant mouse rabbit squirrel deer moose buffalo camel donkey sheep
goat cow pig chicken duck goose swan penguin parrot pigeon sparrow raven crow hawk heron stork
lighthouse cathedral monastery fortress citadel harbor pier dock canal fountain statue monument
""".split()
SYLLABLES = ["ka", "lo", "mi", "ren", "tor", "sa", "vel", "dun", "pra", "ish", "bel", "cor", "fen",
             "gal", "hum", "jor", "kel", "lum", "mor", "nal", "pel", "quin", "ros", "sil", "tam",
             "ul", "vor", "wes", "yar", "zen", "an", "eth", "or", "im", "ur"]


def _vocabulary(size=6000):
    words, seen = [], set()
    for w in COMMON:
        if w not in seen:
            seen.add(w)
            words.append(w)
    rng = random.Random(1)
    while len(words) < size:
        w = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4)))
        if w not in seen:
            seen.add(w)
            words.append(w)
    return words


WORDS = _vocabulary()
_CUMULATIVE = []
_total = 0.0
for _rank in range(len(WORDS)):
    _total += 1.0 / (_rank + 1)
    _CUMULATIVE.append(_total)


def _word(rng):
    return WORDS[min(len(WORDS) - 1, bisect.bisect_left(_CUMULATIVE, rng.random() * _total))]


def _sentence(rng, n):
    return " ".join(_word(rng) for _ in range(n))


def _text(i):
    rng = random.Random(1000003 * i + 17)
    title = _sentence(rng, rng.randint(3, 6)).title()
    body = ". ".join(_sentence(rng, rng.randint(6, 12)).capitalize() for _ in range(4)) + "."
    return title, body


def page(i):
    """The data of seeded page record `i`."""
    title, body = _text(i)
    return {"slug": f"page-{i}", "title": title, "body": body, "rank": i}


def seed_models(gql, url, root):
    """`note_raw`: `note`'s fields as JSON, which search does not index."""
    gql(url, root, """mutation { createModel(input: {key: "note_raw", name: "Note (JSON)", fields: [
        {name: "title", type: JSON, required: true}, {name: "body", type: JSON}]}) { key } }""")


SEARCH_Q = ("query($q: String!) { search(query: $q, limit: 10) "
            "{ items { score record { id data } highlights { field snippet } } } }")
CREATE_Q = "mutation($d: JSON!) { createRecord(modelKey: \"%s\", data: $d) { id } }"
RANKED = {w: r for r, w in enumerate(WORDS)}


def _query_words(i):
    """The words of record `i` that a search box would get (rank 30-3,000)."""
    title, body = _text(i)
    words = (title + " " + body).lower().replace(".", " ").split()
    return [w for w in dict.fromkeys(words) if 30 <= RANKED.get(w, 0) <= 3000]


def bodies(rng, public, secret, records):
    """The search kinds' bodies (cheap: built whether or not they run)."""
    two, typo = [], []
    keys = public[:200] or [secret]
    rng = random.Random(11)
    while len(two) < 500 or len(typo) < 500:
        words = _query_words(rng.randrange(max(1, records)))
        if len(words) >= 2 and len(two) < 500:
            a, b = rng.sample(words, 2)
            two.append((1, rng.choice(keys), {"query": SEARCH_Q, "variables": {"q": f"{a} {b}"}}))
        long = [w for w in words if len(w) >= 6]
        if long and len(typo) < 500:
            w = rng.choice(long)
            at = rng.randrange(1, len(w) - 1)
            changed = w[:at] + ("x" if w[at] != "x" else "y") + w[at + 1:]
            typo.append((1, rng.choice(keys), {"query": SEARCH_Q, "variables": {"q": changed}}))
    notes = [{"title": t, "body": b} for t, b in (_text(records + n) for n in range(50))]
    return {
        "search2": two,
        "searchtypo": typo,
        "create_text": [(1, secret, {"query": CREATE_Q % "note", "variables": {"d": d}}) for d in notes],
        "create_raw": [(1, secret, {"query": CREATE_Q % "note_raw", "variables": {"d": d}}) for d in notes],
    }


KINDS = ("search2", "searchtypo", "create_text", "create_raw")
# (name, server label, body kind, naive counterpart), as harness.MIXES.
MIXES = [
    ("search: two words, cache off", "quire-nocache", "search2", None),
    ("search: one typo, cache off", "quire-nocache", "searchtypo", None),
    ("createRecord, text indexed", "quire", "create_text", None),
    ("createRecord, same text as JSON", "quire", "create_raw", None),
    ("pg: search: two words, cache off", "pg-nocache", "search2", None),
    ("pg: search: one typo, cache off", "pg-nocache", "searchtypo", None),
    ("pg: createRecord, text indexed", "pg-quire", "create_text", None),
    ("pg: createRecord, same text as JSON", "pg-quire", "create_raw", None),
]
