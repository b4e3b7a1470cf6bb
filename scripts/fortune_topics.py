#!/usr/bin/env python3
"""fortune_topics.py - a labelled text for sequence classification: fortunes and the file
each came from.

    python3 scripts/fortune_topics.py OUT.csv [FORTUNE_FOLDER]

Reads four of Debian's fortune files (computers, politics, science, songs-poems: each has
over 600 fortunes, and their subjects differ), makes each fortune one line of
"text,label" (its lines and runs of blank space joined by single spaces; the label is the
file's name) and writes them in an order shuffled with a fixed seed, so that the last
lines, which `ctrain data import-text --labels` keeps for validation, hold every topic.
The same fortune files always give the same file.
"""
import os
import random
import sys

TOPICS = ["computers", "politics", "science", "songs-poems"]


def fortunes(path):
    """The fortunes of a file: blocks of text between lines holding only '%'."""
    with open(path, encoding="utf-8", errors="replace") as f:
        block = []
        for line in f:
            if line.rstrip("\n") == "%":
                yield " ".join(" ".join(block).split())
                block = []
            else:
                block.append(line)
        yield " ".join(" ".join(block).split())


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: fortune_topics.py OUT.csv [FORTUNE_FOLDER]")
    src = sys.argv[2] if len(sys.argv) == 3 else "/usr/share/games/fortunes"
    rows = [(text, topic) for topic in TOPICS
            for text in fortunes(os.path.join(src, topic)) if text]
    random.Random(1).shuffle(rows)
    with open(sys.argv[1], "w", encoding="utf-8") as out:
        for text, topic in rows:
            out.write(f"{text},{topic}\n")


if __name__ == "__main__":
    main()
