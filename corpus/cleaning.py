"""Per-source cleaning of BabyLM corpus lines.

`RULES` below is the whole specification: read it top to bottom. Each rule has a
name, the sources it applies to (None: every source, including added corpora
that are not one of the ten BabyLM sources), a one-line description and a
function from one line to its cleaned text. `clean_lines` applies the rules in
list order to every line of one source and counts, per rule, the lines that
rule changed.

Decisions that hold for all rules:
- A line that becomes empty is dropped (the pipeline drops empty lines anyway).
  The rule that emptied it counts it, so rules described as "drops the line"
  count dropped lines. Lines that were blank to begin with are dropped without
  being counted: there was nothing to clean.
- A rule that removes something also tidies the spaces around the gap (runs of
  whitespace become one space, ends stripped), so "a [laughter] b" becomes
  "a b" in one step and the final `whitespace` rule only counts lines whose
  own spacing was irregular and that no earlier rule touched.
- Lines are stripped before the rules run (as `pretraining_dataset.read_lines`
  does), so leading/trailing whitespace and line ends are not counted as changes.
- Cleaning is idempotent: cleaning cleaned lines changes nothing.
- Words are never rewritten (no spelling, case or tokenization changes): rules
  only remove markup and non-speech, or turn markup into the text it stands for.

Written against the surface of the real BabyLM 2023 files (CHAT codes in
aochildes, `<laughter>`, `(( ))` and annotator notes in switchboard, PTB
bracket escapes and `_BOOK_TITLE_` lines in cbt, footnotes in children_stories,
WikiText headers in wikipedia) and the synthetic `data/sample` corpus."""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from utils import numbered_lines


@dataclass(frozen=True)
class Rule:
    """One cleaning rule: `apply` maps a line to its cleaned text ('' drops the line)."""

    name: str
    sources: frozenset[str] | None  # None: every source
    description: str
    apply: Callable[[str], str]


# --------------------------------------------------------------------------- rule builders
# Each builder takes a `hint`: a substring (or a tuple of substrings) one of which
# every match contains. `hint in line` is a C-speed scan, so most lines skip the
# regex entirely (all rules together clean about 20 MB/s on one core).

Hint = str | tuple[str, ...] | None


def _absent(hint: Hint, line: str) -> bool:
    """True when no match is possible because the line holds none of the hint substrings."""
    if hint is None:
        return False
    if isinstance(hint, str):
        return hint not in line
    for h in hint:  # a plain loop: any() over a generator costs more than the scans
        if h in line:
            return False
    return True


def _squeeze(text: str) -> str:
    """Runs of whitespace (any Unicode space, tab, ...) -> one space; ends stripped."""
    return " ".join(text.split())


_GLUED_PUNCTUATION = frozenset(".,;:!?")


def _remove(pattern: str, hint: Hint = None, flags: int = 0) -> Callable[[str], str]:
    """Remove every match with the spaces before it, then tidy spaces.

    A match leaves a space, so the words on its two sides stay apart, except
    when punctuation is glued to its end ('very, very (( )).' -> 'very, very.')."""
    regex = re.compile(rf"\s*(?:{pattern})", flags)

    def gap(m: re.Match) -> str:
        end = m.end()
        return "" if end < len(m.string) and m.string[end] in _GLUED_PUNCTUATION else " "

    return _replace(regex, gap, hint)


def _replace(pattern: str | re.Pattern, repl: str | Callable[[re.Match], str], hint: Hint = None,
             flags: int = 0) -> Callable[[str], str]:
    """Replace every match by `repl` (a template or a function), then tidy spaces."""
    regex = pattern if isinstance(pattern, re.Pattern) else re.compile(pattern, flags)

    def apply(line: str) -> str:
        if _absent(hint, line):
            return line
        new = regex.sub(repl, line)
        return line if new == line else _squeeze(new)

    return apply


def _chain(*steps: Callable[[str], str]) -> Callable[[str], str]:
    """One rule made of several steps applied in turn."""

    def apply(line: str) -> str:
        for step in steps:
            line = step(line)
        return line

    return apply


def _drop_if(pattern: str, hint: Hint = None) -> Callable[[str], str]:
    """Drop the whole line when it matches `pattern` at its start."""
    regex = re.compile(pattern)

    def apply(line: str) -> str:
        if _absent(hint, line):
            return line
        return "" if regex.match(line) else line

    return apply


# --------------------------------------------------------------------------- rules that need more than a regex

# Only entities with their closing ';': html.unescape alone would also decode
# legacy forms without it, and "AT&T" or "&copy" in prose would change.
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")


def _decode_entities(line: str) -> str:
    if "&" not in line:
        return line
    new = line
    # A few rounds: double-escaped markup ("&amp;amp;", "&amp;lt;br&amp;gt;")
    # must decode completely, or cleaning twice would differ from cleaning once.
    for _ in range(4):
        decoded = _ENTITY.sub(lambda m: html.unescape(m.group()), new)
        if decoded == new:
            break
        new = decoded
    return new


def _nfkc(line: str) -> str:
    if line.isascii():  # ASCII is always NFKC: the common case costs one C scan
        return line
    return line if unicodedata.is_normalized("NFKC", line) else unicodedata.normalize("NFKC", line)


_LETTER_OR_DIGIT = re.compile(r"[^\W_]")


def _drop_without_letters(line: str) -> str:
    return line if _LETTER_OR_DIGIT.search(line) else ""


def _whitespace(line: str) -> str:
    if "  " not in line and line.isprintable():  # no double space, tab or other whitespace: nothing to do
        return line
    return _squeeze(line)


# HTML element names seen in web-derived text, and attributes only in name=value
# form. A whitelist rather than any "<word>": the spoken sources' "<pause>" and
# "<laughter>" marks have their own rule (and count there); "a < b" (a space
# after "<") is never a tag, and neither is CHAT's "<i want> [/]" (the words of
# a retraced stretch, which chat_codes keeps).
_HTML_TAGS = ("a|abbr|b|big|blockquote|br|center|cite|code|dd|del|div|dl|dt|em|font|h[1-6]|hr|i|img|ins|"
              "kbd|li|math|nowiki|ol|p|poem|pre|q|ref|references|s|small|span|strike|strong|sub|sup|"
              "table|tbody|td|th|thead|tr|tt|u|ul|var|wbr")
_HTML_ATTRIBUTES = r"""(?:\s+[\w:-]+\s*=\s*(?:"[^"<>]*"|'[^'<>]*'|[^\s"'<>]+))*"""

# Control and zero-width characters: the BOM a file may start with, zero-width
# spaces and joiners, soft hyphens, direction marks. Removed without a space
# ("co\u00adoperate" -> "cooperate"). Tab, line breaks and other whitespace are
# left to the whitespace rule.
_INVISIBLE = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\u00ad\u200b-\u200f\u2060\ufeff]")


def _remove_invisible(line: str) -> str:
    if line.isprintable():  # C-speed pre-check; False also for a tab or a no-break space
        return line
    new = _INVISIBLE.sub("", line)
    return line if new == line else _squeeze(new)


_PTB_BRACKETS = {"-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]", "-LCB-": "{", "-RCB-": "}"}

BOOKS = frozenset({"cbt", "children_stories", "gutenberg"})
WIKI = frozenset({"wikipedia", "simple_wikipedia"})


def _only(*sources: str) -> frozenset[str]:
    return frozenset(sources)


# --------------------------------------------------------------------------- the rules, in the order they run

RULES: tuple[Rule, ...] = (
    # ---- all sources, first: decode the text, so later patterns see plain characters
    Rule("html_entities", None,
         "HTML entities -> characters: &amp; -> &, &quot; -> \", &#39; -> ', &nbsp; -> space "
         "(double-escaped &amp;amp; fully); unknown names and a bare '&' are kept",
         _decode_entities),
    Rule("unicode_nfkc", None,
         "Unicode NFKC: ligatures (ﬁ -> fi), full-width forms, … -> ..., no-break space -> space, "
         "½ -> 1⁄2, ² -> 2; curly quotes and accents are kept",
         _nfkc),
    Rule("invisible_chars", None,
         "control and zero-width characters removed: BOM, zero-width space/joiners, soft hyphen, "
         "direction marks, ASCII control codes other than whitespace",
         _remove_invisible),
    Rule("html_tags", None,
         "HTML tags removed, their text kept: <br>, <br/>, <i>...</i>, <ref name=x>, <!-- comments -->",
         _remove(rf"<!--.*?-->|</?(?:{_HTML_TAGS}){_HTML_ATTRIBUTES}\s*/?>", hint="<", flags=re.IGNORECASE)),

    # ---- aochildes (CHILDES, CHAT transcription format)
    Rule("chat_header_line", _only("aochildes"),
         "drops CHAT header and dependent-tier lines: @Begin, @Participants: ..., %mor: ..., %com: ...",
         _drop_if(r"@[A-Z][A-Za-z ]*(?::|$)|%[a-z]{2,4}:", hint=("@", "%"))),
    Rule("chat_speaker_label", _only("aochildes"),
         "speaker label at the line start: *MOT:<tab>, *CHI:, *FAT:, *INV: ...",
         _remove(r"^(?:\*[A-Z][A-Z0-9]{1,3}:\s*)+", hint="*")),
    Rule("chat_codes", _only("aochildes"),
         "CHAT codes: [+ IMIT], [+ PI], [= points], [/], [//], [*], [?], &=laughs events; "
         "the < > around a retraced stretch are removed, its words kept",
         _remove(r"\[[^\[\]]*\]|&=\S+|[<>]", hint=("[", "&=", "<", ">"))),
    Rule("chat_unintelligible", _only("aochildes"),
         "CHAT untranscribed-speech words: xxx (unintelligible), yyy (phonetic), www (not transcribed)",
         _remove(r"(?<![\w'])(?:xxx|yyy|www)(?![\w'])", hint=("xxx", "yyy", "www"))),

    # ---- bnc_spoken (British National Corpus, spoken part)
    Rule("bnc_speaker_label", _only("bnc_spoken"),
         "speaker label at the line start: S01:, S05:, PS1A3: (BNC person id)",
         _remove(r"^(?:(?:S\d{1,3}|PS[0-9A-Z]{3}):\s*)+", hint=":")),

    # ---- switchboard (SWDA telephone conversations)
    Rule("switchboard_speaker_label", _only("switchboard"),
         "speaker label at the line start: A:<tab>, B:<tab>, A.12:",
         _remove(r"^(?:[AB](?:\.\d+)?:(?:\s+|$))+", hint=":")),
    Rule("switchboard_notes", _only("switchboard"),
         "annotator notes removed from a '*' starting a word to the line end (*listen; ..., *typo, *sd, "
         "* to = too); the few notes followed by speech lose that speech too",
         _remove(r"(?:^|\s)\*.*$", hint="*")),
    Rule("switchboard_uncertain", _only("switchboard"),
         "transcriber doubt: (( )) (unintelligible) removed, ((word)) -> word",
         _chain(_remove(r"\(\(\s*\)\)", hint="(("),
                _replace(r"\(\(\s*([^()]*?)\s*\)\)", r" \1 ", hint="(("))),
    Rule("switchboard_event_words", _only("switchboard"),
         "noise events written as one underscored word (child_talking): speech has no underscores",
         _remove(r"(?<!\S)[A-Za-z]+(?:_[A-Za-z]+)+(?!\S)", hint="_")),

    # ---- spoken sources: non-speech in brackets
    Rule("sound_marks", _only("bnc_spoken", "switchboard", "open_subtitles"),
         "non-speech events: [laughter], [laughs], [noise], [coughs], <pause>, <unclear>, <laughter>, "
         "<talking>, subtitle sound cues [door slams]; in these sources brackets never hold what was said",
         _remove(r"\[[^\[\]]*\]|<[A-Za-z][A-Za-z _-]*>", hint=("[", "<"))),
    Rule("qed_stage_directions", _only("qed"),
         "lecture stage directions: (Applause), (Laughter), (Music), (Video), (Laughter ends): "
         "a parenthesis of one to four words, the first a capitalised word (so '(A)' or '(I see)' stay)",
         _remove(r"\([A-Z][a-z]+(?: [A-Za-z]+){0,3}\)", hint="(")),
    Rule("subtitle_dialogue_dash", _only("open_subtitles"),
         "dialogue dashes: a leading '- ' and a ' - ' that starts the second speaker after . ? ! "
         "(the two turns stay on one line); a dash inside a sentence is kept",
         _replace(r"^(?:-+\s+)+|(?<=[.?!\"'])\s+-+\s+(?=\S)", " ", hint="-")),

    # ---- books (cbt, children_stories, gutenberg)
    Rule("cbt_book_title", _only("cbt"),
         "drops the '_BOOK_TITLE_ : Author___Title.txt.out' line that starts each book",
         _drop_if(r"_BOOK_TITLE_\b", hint="_BOOK_TITLE_")),
    Rule("ptb_brackets", _only("cbt"),
         "Penn Treebank escapes -> brackets: -LRB- -RRB- -> ( ), -LSB- -RSB- -> [ ], -LCB- -RCB- -> { }",
         _replace(r"-[LR][RSC]B-", lambda m: _PTB_BRACKETS[m.group()], hint="B-")),
    Rule("illustration_captions", BOOKS,
         "illustration captions removed: [Illustration], [Illustration: The Princess ...] (after ptb_brackets)",
         _remove(r"\[\s*Illustration\b[^\[\]]*\]", hint="Illustration")),
    Rule("footnotes", BOOKS,
         "footnotes removed: the [Footnote 2: ...] text and the [3] reference marks",
         _remove(r"\[Footnote\b[^\[\]]*\]|\[\d{1,3}\]", hint="[")),
    Rule("section_breaks", BOOKS,
         "section-break asterisks removed: '* * *', '* * * * *' (three or more lone '*')",
         _remove(r"(?<!\S)\*(?:\s+\*){2,}(?!\S)", hint="* *")),
    Rule("underscore_emphasis", _only("gutenberg", "children_stories"),
         "Gutenberg italics: _word_ and _several words_ -> the words",
         _replace(r"(?<![\w_])_([^_\s](?:[^_]*[^_\s])?)_(?![\w_])", r"\1", hint="_")),

    # ---- wikipedia, simple_wikipedia
    Rule("wiki_headers", WIKI,
         "WikiText headers keep their title as a line of its own: '= Title =', '= = = History = = =' "
         "-> 'History'. Kept, not dropped: titles are words of the article (its name, its sections) and "
         "match simple_wikipedia's plain title lines; a header without a title is dropped",
         _replace(r"^=(?:\s*=)*\s*(.*?)\s*=(?:\s*=)*$|^=(?:\s*=)*$", r"\1", hint="=")),

    # ---- all sources, last
    Rule("no_letters_line", None,
         "drops lines with no letter or digit left: '* * *' breaks, a lone '.' or '- -'",
         _drop_without_letters),
    Rule("whitespace", None,
         "runs of spaces, tabs and other whitespace inside a line -> one space",
         _whitespace),
)

RULE_NAMES: tuple[str, ...] = tuple(rule.name for rule in RULES)


# --------------------------------------------------------------------------- API


def rules_digest() -> str:
    """A short hash of this module's source: part of the dataset cache key, so
    that editing a rule rebuilds the cached datasets cleaned by the old rules."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def source_of(path: str | Path) -> str:
    """The BabyLM source a corpus file holds: its file stem (`aochildes` for `.../aochildes.train`)."""
    return Path(path).stem


# The 2024 release's names for sources the rules know by their 2023 names (the same corpora).
SOURCE_ALIASES = {"childes": "aochildes", "simple_wiki": "simple_wikipedia"}


def rules_for(source: str) -> tuple[Rule, ...]:
    """The rules that apply to `source` (a 2023 or 2024 source name), in order. A source that
    is not a BabyLM source (an added corpus) gets only the rules for every source."""
    source = SOURCE_ALIASES.get(source, source)
    return tuple(rule for rule in RULES if rule.sources is None or source in rule.sources)


def clean_lines(lines: Iterable[str], source: str) -> tuple[list[str], dict[str, int]]:
    """Clean the lines of one `source` file.

    Returns the cleaned, non-empty lines in order and, for every rule name in
    `RULES`, how many lines that rule changed (0 for rules that did not fire or
    do not apply to `source`). A line counts once per rule that changed it."""
    rules = rules_for(source)
    changed = dict.fromkeys(RULE_NAMES, 0)
    kept = []
    for line in lines:
        # Stripped first, as the pipeline's read_lines does, so that anchored
        # patterns (labels, headers) also match a line with stray indentation.
        line = line.strip()
        if not line:
            continue
        for rule in rules:
            new = rule.apply(line)
            if new != line:
                changed[rule.name] += 1
                line = new
                if not line:
                    break
        if line:
            kept.append(line)
    return kept, changed


def clean_files(files: Iterable[str | Path]) -> tuple[list[str], dict[str, int]]:
    """Read the files (strict UTF-8: a UserError names the file and line) and clean
    each with the rules of its source (`source_of`); the lines of all files in
    order, and the per-rule counts summed over the files."""
    lines: list[str] = []
    total = dict.fromkeys(RULE_NAMES, 0)
    for path in files:
        kept, changed = clean_lines((line for _, line in numbered_lines(path)), source_of(path))
        lines.extend(kept)
        for name, n in changed.items():
            total[name] += n
    return lines, total


def format_counts(changed: dict[str, int]) -> str:
    """'name=N, ...' for the rules that changed at least one line (for a log line), or 'nothing changed'."""
    fired = [f"{name}={n}" for name, n in changed.items() if n]
    return ", ".join(fired) if fired else "nothing changed"


def describe_rules() -> str:
    """The rule list as a markdown table (for the README or `--help`)."""
    rows = ["| rule | sources | what it does |", "|---|---|---|"]
    for rule in RULES:
        sources = "all" if rule.sources is None else ", ".join(sorted(rule.sources))
        description = rule.description.replace("|", "\\|")  # a '|' would end the table cell
        rows.append(f"| `{rule.name}` | {sources} | {description} |")
    return "\n".join(rows)
