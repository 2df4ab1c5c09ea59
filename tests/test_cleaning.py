"""Per-source cleaning rules: one hand-written dirty line per rule and pattern,
rules firing only for their sources, per-rule counts, idempotence, and that the
cleaned sample corpus keeps its words and loses its markup."""

from __future__ import annotations

import re

import pytest
from conftest import SAMPLE

from corpus.cleaning import (
    RULE_NAMES,
    RULES,
    clean_files,
    clean_lines,
    describe_rules,
    format_counts,
    rules_digest,
    rules_for,
    source_of,
)
from corpus.editions import KNOWN_SOURCES
from utils import UserError

# (rule that must fire, source, dirty line, clean line or None when the line is dropped)
DIRTY = [
    ("html_entities", "simple_wikipedia", "Arts &amp; Sciences", "Arts & Sciences"),
    ("html_entities", "wikipedia", "&quot;Hi,&quot; she said. It&#39;s late.", '"Hi," she said. It\'s late.'),
    ("html_entities", "wikipedia", "salt &amp;amp; honey", "salt & honey"),
    ("html_entities", "wikipedia", "ten&nbsp;miles", "ten miles"),
    ("unicode_nfkc", "gutenberg", "the ﬁrst ﬂower", "the first flower"),
    ("unicode_nfkc", "open_subtitles", "Ｗａｉｔ…", "Wait..."),
    ("invisible_chars", "children_stories", "\ufeffOnce upon a time", "Once upon a time"),
    ("invisible_chars", "gutenberg", "they co\u00adoperate", "they cooperate"),
    ("html_tags", "simple_wikipedia", "It is very old.<br>", "It is very old."),
    ("html_tags", "wikipedia", "a <i>big</i> <B>red</B> barn <br />", "a big red barn"),
    ("html_tags", "wikipedia", "the mill<ref name=\"a\">Tarn 1990</ref> burned", "the mill Tarn 1990 burned"),
    ("html_tags", "wikipedia", "the <!-- fix me --> mill", "the mill"),
    ("html_tags", "qed", "<br>", None),
    ("chat_header_line", "aochildes", "@Begin", None),
    ("chat_header_line", "aochildes", "%mor:\tpro|you v|want det|the n|ball", None),
    ("chat_speaker_label", "aochildes", "*MOT:\twhere is the bag ?", "where is the bag ?"),
    ("chat_speaker_label", "aochildes", "*CHI:\tmore juice !", "more juice !"),
    ("chat_codes", "aochildes", "look at the duck . [+ IMIT]", "look at the duck ."),
    ("chat_codes", "aochildes", "<i want> [/] i want the cup .", "i want i want the cup ."),
    ("chat_codes", "aochildes", "&=laughs that's funny [= the dog] .", "that's funny ."),
    ("chat_unintelligible", "aochildes", "the xxx baby sleeps .", "the baby sleeps ."),
    ("chat_unintelligible", "aochildes", "yyy yyy ball .", "ball ."),
    ("chat_unintelligible", "aochildes", "xxx .", None),
    ("bnc_speaker_label", "bnc_spoken", "S05: Shall I put the kettle on?", "Shall I put the kettle on?"),
    ("bnc_speaker_label", "bnc_spoken", "PS1A3: Go on then.", "Go on then."),
    ("switchboard_speaker_label", "switchboard", "A:\tUm, we just have the one.", "Um, we just have the one."),
    ("switchboard_speaker_label", "switchboard", "B.12: Right.", "Right."),
    ("switchboard_notes", "switchboard", "We drove there. *typo drive", "We drove there."),
    ("switchboard_notes", "switchboard", "a cook out, * to = too", "a cook out,"),
    ("switchboard_uncertain", "switchboard", "we went to the ((lake)) house", "we went to the lake house"),
    ("switchboard_uncertain", "switchboard", "it is very, very (( )).", "it is very, very."),
    ("switchboard_event_words", "switchboard", "Right. dog_barking", "Right."),
    ("sound_marks", "switchboard", "[laughter] Yeah, I know.", "Yeah, I know."),
    ("sound_marks", "switchboard", "that's a big one <laughter>.", "that's a big one."),
    ("sound_marks", "bnc_spoken", "I think <pause> it was Tuesday. [laughs]", "I think it was Tuesday."),
    ("sound_marks", "bnc_spoken", "<unclear>", None),
    ("sound_marks", "open_subtitles", "[door slams] Who's there?", "Who's there?"),
    ("qed_stage_directions", "qed", "(Applause)", None),
    ("qed_stage_directions", "qed", "It's really simple. (Laughter)", "It's really simple."),
    ("qed_stage_directions", "qed", "(Laughter ends) So, where was I?", "So, where was I?"),
    ("subtitle_dialogue_dash", "open_subtitles", "- Wait for me!", "Wait for me!"),
    ("subtitle_dialogue_dash", "open_subtitles", "- Who are you? - Nobody.", "Who are you? Nobody."),
    ("cbt_book_title", "cbt", "_BOOK_TITLE_ : Some_Author___A_Small_Tale.txt.out", None),
    ("ptb_brackets", "cbt", "he said -LRB- very quietly -RRB- .", "he said ( very quietly ) ."),
    ("ptb_brackets", "cbt", "-LCB- x -RCB-", "{ x }"),
    ("illustration_captions", "cbt", "-LSB- Illustration : The Frog -RSB- There was a frog .", "There was a frog ."),
    ("illustration_captions", "gutenberg", "[Illustration] THE END.", "THE END."),
    ("footnotes", "children_stories", "and so they sang the old song.[2]", "and so they sang the old song."),
    ("footnotes", "gutenberg", "[Footnote 1: A kind of small boat.]", None),
    ("section_breaks", "gutenberg", "* * *", None),
    ("section_breaks", "cbt", "* * * * * Next morning she woke .", "Next morning she woke ."),
    ("underscore_emphasis", "gutenberg", "He was _very_ tired.", "He was very tired."),
    ("underscore_emphasis", "gutenberg", "_Oren_'s fox ran _all the way_ home.", "Oren's fox ran all the way home."),
    ("wiki_headers", "wikipedia", "= = = Later years = = =", "Later years"),
    ("wiki_headers", "wikipedia", "= Tarrow =", "Tarrow"),
    ("wiki_headers", "simple_wikipedia", "= = History = =", "History"),
    ("wiki_headers", "wikipedia", "= = = =", None),
    ("no_letters_line", "cbt", ". . .", None),
    ("no_letters_line", "children_stories", "+        +", None),
    ("whitespace", "wikipedia", "Many  people\tlive here. ", "Many people live here."),
    ("whitespace", "switchboard", "I, I  think so", "I, I think so"),
]

# (source, line) that no rule may change: rules fire only for their sources, and
# text that merely looks like markup stays.
UNCHANGED = [
    ("cbt", "A: the first letter , said he ."),
    ("gutenberg", "S05: the file was lost."),
    ("wikipedia", "The xxx album was released in 1990."),
    ("qed", "[laughter] is a word in brackets"),
    ("qed", "the answer is (A) and (I see) why"),
    ("switchboard", "(Applause)"),
    ("cbt", "- Hello there , '' he said ."),
    ("open_subtitles", "I was - I mean - there."),
    ("wikipedia", "He was _very_ tired."),
    ("gutenberg", "= = History = ="),
    ("simple_wikipedia", "It has 2 + 2 = 4 wells."),
    ("children_stories", "“Hello,” she said. “It’s me.”"),
    ("gutenberg", "AT&T and R&D and &c. and &copy"),
    ("switchboard", "if a < b and c > d"),
    ("aochildes", "what's that ?"),
    ("aochildes", "is it a boxxx ?"),
    ("children_stories", "Braddock's man[oe]uvre"),
    ("bnc_spoken", "Song 2: the chorus"),
]


@pytest.mark.parametrize(("rule", "source", "dirty", "clean"), DIRTY,
                         ids=[f"{r}-{i}" for i, (r, *_) in enumerate(DIRTY)])
def test_each_rule_cleans_its_dirty_line(rule, source, dirty, clean):
    kept, counts = clean_lines([dirty], source)
    assert kept == ([] if clean is None else [clean])
    assert counts[rule] == 1, format_counts(counts)


@pytest.mark.parametrize(("source", "line"), UNCHANGED)
def test_rules_leave_other_sources_and_lookalikes_alone(source, line):
    kept, counts = clean_lines([line], source)
    assert kept == [line]
    assert not any(counts.values()), format_counts(counts)


def test_every_rule_has_a_dirty_example():
    assert {rule for rule, *_ in DIRTY} == set(RULE_NAMES)


def test_counts_per_rule_on_a_mixed_input():
    lines = ["A:\tYeah. [laughter]", "B:\tRight.", "Okay.\n", "", "   ", "[noise]", "So  what?", "B:\t((yeah))"]
    kept, counts = clean_lines(lines, "switchboard")
    assert kept == ["Yeah.", "Right.", "Okay.", "So what?", "yeah"]
    expected = dict.fromkeys(RULE_NAMES, 0)
    # "[noise]" alone is dropped and counted by the rule that emptied it; blank
    # lines and the line end of "Okay.\n" are not counted.
    expected.update(switchboard_speaker_label=3, sound_marks=2, switchboard_uncertain=1, whitespace=1)
    assert counts == expected
    assert format_counts(counts) == ("switchboard_speaker_label=3, switchboard_uncertain=1, sound_marks=2, "
                                     "whitespace=1")
    assert format_counts(dict.fromkeys(RULE_NAMES, 0)) == "nothing changed"


def test_a_line_counts_once_per_rule_that_changed_it():
    # Two marks in one line: sound_marks counts the line once.
    kept, counts = clean_lines(["S01: I <pause> think so. [laughs]"], "bnc_spoken")
    assert kept == ["I think so."]
    assert counts["bnc_speaker_label"] == 1 and counts["sound_marks"] == 1


def test_cleaning_is_idempotent_on_every_example():
    for _, source, dirty, _ in DIRTY:
        once, _ = clean_lines([dirty], source)
        twice, counts = clean_lines(once, source)
        assert twice == once and not any(counts.values()), (source, dirty, format_counts(counts))


def test_cleaning_the_sample_corpus_is_idempotent_and_keeps_most_words():
    files = sorted(SAMPLE.glob("*/*.*[!d]"))  # every corpus file, not README.md
    assert len(files) == 30
    words_before = words_after = 0
    for path in files:
        raw = path.read_text(encoding="utf-8").splitlines()
        kept, counts = clean_lines(raw, source_of(path))
        again, counts_again = clean_lines(kept, source_of(path))
        assert again == kept and not any(counts_again.values()), path
        before = sum(len(line.split()) for line in raw)
        after = sum(len(line.split()) for line in kept)
        # The most a file loses is its labels and headers' '=' signs (~13% for simple_wikipedia).
        assert after >= 0.8 * before, (path, before, after)
        words_before += before
        words_after += after
        # What the sample's README says each source holds is gone.
        text = "\n".join(kept)
        for leftover in (r"^\*[A-Z]{3}:", r"^S\d\d:", r"^[AB]:", r"\[", r"<\w+>", r"&\w+;", r"^- ",
                         r"\((Applause|Laughter|Music)\)", r"^=", r"_BOOK_TITLE_", r"\bxxx\b", r"\byyy\b", r"  "):
            assert not re.search(leftover, text, re.MULTILINE), (path, leftover)
    assert words_after >= 0.93 * words_before


def test_rules_name_only_babylm_sources_and_names_are_unique():
    assert len(set(RULE_NAMES)) == len(RULES)
    for rule in RULES:
        assert rule.sources is None or rule.sources <= set(KNOWN_SOURCES), rule.name
        assert rule.description


def test_an_added_corpus_gets_only_the_rules_for_every_source():
    assert rules_for("my_corpus") == tuple(rule for rule in RULES if rule.sources is None)
    kept, counts = clean_lines(["*MOT:\tkept  &amp; tidied"], "my_corpus")
    assert kept == ["*MOT: kept & tidied"]
    assert counts["chat_speaker_label"] == 0


def test_source_of_is_the_file_stem(tmp_path):
    assert source_of("aochildes.train") == "aochildes"
    assert source_of(tmp_path / "babylm_dev" / "simple_wikipedia.dev") == "simple_wikipedia"


def test_clean_files_uses_each_files_source_and_sums_counts(tmp_path):
    (tmp_path / "switchboard.train").write_text("A:\tYeah.\nB:\tNo.\n", encoding="utf-8")
    (tmp_path / "cbt.train").write_text("A: the letter .\n\n", encoding="utf-8")
    (tmp_path / "qed.train").write_text("(Applause)\nA: the answer.\n", encoding="utf-8")
    files = [tmp_path / "switchboard.train", tmp_path / "cbt.train", tmp_path / "qed.train"]
    lines, counts = clean_files(files)
    assert lines == ["Yeah.", "No.", "A: the letter .", "A: the answer."]
    assert counts["switchboard_speaker_label"] == 2 and counts["qed_stage_directions"] == 1
    assert sum(counts.values()) == 3


def test_clean_files_refuses_bytes_that_are_not_utf8(tmp_path):
    path = tmp_path / "qed.train"
    path.write_bytes(b"fine\ncaf\xe9\n")
    with pytest.raises(UserError, match=r"qed.train line 2"):
        clean_files([path])


def test_describe_rules_lists_every_rule_in_order():
    table = describe_rules().splitlines()
    assert len(table) == 2 + len(RULES)
    assert [re.match(r"\| `(\w+)`", row)[1] for row in table[2:]] == list(RULE_NAMES)


def test_rules_digest_is_a_stable_short_hash():
    assert re.fullmatch(r"[0-9a-f]{16}", rules_digest())
    assert rules_digest() == rules_digest()
