"""Repair of the CrowdFlower corpus's stacked mojibake (`repair_mojibake`); the loading,
cleaning and splitting that use it are in `utils.data.corpus`."""
import re
import unicodedata
from functools import lru_cache

# The CrowdFlower file's non-ASCII characters went through one "corruption step"
# several times: UTF-8 bytes were decoded as Windows-1252 and re-encoded as MacRoman,
# characters MacRoman lacks becoming "_" (and the 5 bytes cp1252 leaves undefined
# passing through unchanged). Depending on the sub-corpus the step was applied 2, 3
# or 4 times (in the 4-times part the text had already been through a classic
# UTF-8-read-as-cp1252 mix-up first). Example: "’" = E2 80 99 -> 89 DB AA -> E4 F3 BB,
# which reads "‰Ûª" in MacRoman. The step is a byte -> byte map, so we invert it and
# pick, per run of odd characters, the reading that is valid UTF-8 (undoing the classic
# cp1252 mix-up too when that decodes). A byte that became "_" is lost; we only restore
# it when exactly one value fits (e.g. the F0 lead byte of an emoji) or exactly one
# candidate is punctuation/symbol; otherwise that character is dropped, not guessed.
# Readings full of stray combining marks or non-Latin letters lose to plainer ones.
# Checked on examples in data/README.md and tests/test_data.py.

_CP1252_UNDEFINED = frozenset({0x81, 0x8D, 0x8F, 0x90, 0x9D})
_UNDERSCORE = 0x5F
_MAX_CORRUPTION_ROUNDS = 4
_KEEP_RAW_COST = 3  # a character left as mojibake is worse than one dropped (cost 1)
_LITERAL_UNDERSCORE_COST = 0.1
_MOJIBAKE_RUN = re.compile(r"(?:_*[^\x00-\x7f])+_*")


def _corrupt_byte_once(byte):
    """One corruption step on one byte; None when the character became '_'."""
    if byte < 0x80 or byte in _CP1252_UNDEFINED:
        return byte
    try:
        return bytes([byte]).decode("cp1252").encode("mac_roman")[0]
    except UnicodeEncodeError:
        return None


@lru_cache(maxsize=None)
def _inverse_corruption(rounds):
    """(file byte -> possible original bytes, original bytes that end up as '_')."""
    candidates, lost = {}, []
    for original in range(0x80, 0x100):
        byte = original
        for _ in range(rounds):
            byte = None if byte is None else _corrupt_byte_once(byte)
        if byte is None:
            lost.append(original)
        else:
            candidates.setdefault(byte, []).append(original)
    return candidates, tuple(lost)


def _utf8_length(lead):
    if 0xC2 <= lead <= 0xDF:
        return 2
    if 0xE0 <= lead <= 0xEF:
        return 3
    if 0xF0 <= lead <= 0xF4:
        return 4
    return 0


def _is_continuation(byte):
    return 0x80 <= byte <= 0xBF


def _decode_run(run_bytes, rounds):
    """Best reading of a mojibake run as `rounds`-times corrupted UTF-8: (cost, text)."""
    candidates, lost = _inverse_corruption(rounds)
    n = len(run_bytes)

    def options(position, want):  # original bytes that could sit at `position`
        byte = run_bytes[position]
        pool = lost if byte == _UNDERSCORE else candidates.get(byte, ())
        return [b for b in pool if want(b)]

    best = [None] * (n + 1)  # best[i] = (cost, text) for run_bytes[i:]
    best[n] = (0, "")
    for i in range(n - 1, -1, -1):
        raw = chr(run_bytes[i]) if run_bytes[i] < 0x80 else bytes([run_bytes[i]]).decode("mac_roman")
        # a '_' inside a run is more often a lost byte than a real underscore: when the
        # two readings are otherwise equal, prefer the lost byte
        keep_cost = _LITERAL_UNDERSCORE_COST if run_bytes[i] == _UNDERSCORE else _KEEP_RAW_COST
        choice = (keep_cost + best[i + 1][0], raw + best[i + 1][1])
        for length in (2, 3, 4):
            end = i + length
            if end > n:
                break
            leads = options(i, lambda b, L=length: _utf8_length(b) == L)
            tails = [options(j, _is_continuation) for j in range(i + 1, end)]
            if not leads or not all(tails):
                continue
            # Every combination that decodes is a possible character; keep it only if
            # the combinations agree (usually there is just one).
            decoded = set()
            for lead in leads:
                for tail in _product_limited(tails):
                    try:
                        decoded.add(bytes([lead, *tail]).decode("utf-8"))
                    except UnicodeDecodeError:
                        pass
            if not decoded:
                continue
            char_cost, char = _pick_character(decoded)
            option = (char_cost + best[end][0], char + best[end][1])
            if option[0] < choice[0]:
                choice = option
        best[i] = choice
    return best[0]


def _pick_character(decoded):
    """(cost, char) for the characters a run position could be.

    One candidate: it. Several (a lost byte admits more than one value): tweets in this
    corpus are English, so when exactly one candidate is punctuation, a symbol or a
    space (e.g. '’' among '’' and three CJK ideographs) we take it; otherwise the
    character is dropped rather than guessed.
    """
    if len(decoded) == 1:
        return 0, next(iter(decoded))
    punctuation = [c for c in decoded if unicodedata.category(c)[0] in "PSZ"]
    if len(punctuation) == 1:
        return 0, punctuation[0]
    return 1, ""


def _product_limited(pools, limit=4096):
    """itertools.product, bounded: a run of many lost bytes cannot explode the search."""
    combos = [()]
    for pool in pools:
        combos = [c + (b,) for c in combos for b in pool][:limit]
    return combos


def _undo_cp1252_mixup(text):
    """Classic mojibake fix: UTF-8 that was read as cp1252 ('â€™' -> '’'); else None."""
    raw = bytearray()
    for char in text:
        try:
            raw += char.encode("cp1252")
        except UnicodeEncodeError:
            if ord(char) not in _CP1252_UNDEFINED:  # cp1252 passes these 5 through
                return None
            raw.append(ord(char))
    try:
        fixed = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return fixed if fixed != text else None


# What a UTF-8 lead byte or cp1252's 0x80-0x9F punctuation looks like after a
# UTF-8-read-as-cp1252 mix-up; seen in a reading, that layer was not undone.
_CP1252_MIXUP_LEFTOVER = re.compile("[\u00c2\u00c3\u00e2\u00f0\u0152\u0153\u0160\u0161"
                                    "\u0178\u017d\u017e\u0192\u02c6\u02dc\u2018-\u201e"
                                    "\u2020-\u2022\u2026\u2030\u2039\u203a\u20ac\u2122]{2,}"
                                    "|[\u00c2\u00c3\u00e2\u00f0][\u0080-\u00bf]?$")
# Variation selector-16 and zero-width joiner are parts of ordinary emoji sequences.
_EMOJI_JOINERS = frozenset({"\ufe0f", "\u200d"})


def _implausible_characters(text):
    """How many characters of a reading are unlikely in these English tweets.

    Used to choose between readings that decode equally well: a stray combining
    mark, control/private-use character or a letter outside Latin (CJK, Hangul,
    Arabic...) is much more likely an accidental decoding than the tweet's text.
    """
    count = 0
    for char in text:
        category = unicodedata.category(char)
        if char in _EMOJI_JOINERS:
            continue
        if category[0] in "MC" or (category[0] == "L" and ord(char) >= 0x180):
            count += 1
        elif 0x180 <= ord(char) < 0x2000:  # punctuation of non-Latin scripts
            count += 1
    return count


def repair_mojibake(text):
    """Repair a MacRoman-decoded CrowdFlower text (see the comment block above)."""
    if not isinstance(text, str):
        raise TypeError(f"repair_mojibake expects a str, got {type(text).__name__}")

    def repair_run(match):
        run = match.group(0)
        try:
            run_bytes = run.encode("mac_roman")
        except UnicodeEncodeError:  # not from the MacRoman file: leave it alone
            return run
        readings = []
        for rounds in range(1, _MAX_CORRUPTION_ROUNDS + 1):
            cost, reading = _decode_run(run_bytes, rounds)
            # part of the corpus was also a UTF-8-read-as-cp1252 text before the rounds
            reading = _undo_cp1252_mixup(reading) or reading
            readings.append((cost + 2 * _implausible_characters(reading), rounds, reading))
        reading = min(readings)[2]
        if _CP1252_MIXUP_LEFTOVER.search(reading):
            # the cp1252 layer could not be undone because a byte was lost: what is
            # left ('â€' of a lost '…') is noise, not text
            return " "
        return reading

    return _MOJIBAKE_RUN.sub(repair_run, text)
