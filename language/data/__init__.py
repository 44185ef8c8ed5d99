"""Corpora for the language suite: the offline KJV Bible in the WikiText layout and fairseq binarisation."""
