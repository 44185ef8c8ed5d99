"""The .ts reader: round trip of generated files and located errors for malformed ones."""

from __future__ import annotations

import numpy as np
import pytest

from timeseries.tsfile import TsFileError, read_header, read_ts

GOOD_HEADER = "@problemName Toy\n@timeStamps false\n@univariate false\n@dimensions 2\n@classLabel true a b\n@data\n"


def test_round_trip_values_lengths_labels_and_missing(tmp_path, ts_text):
    rng = np.random.default_rng(1)
    series = [rng.normal(size=(n, 3)) for n in (4, 7, 5)]
    series[1][2, 1] = np.nan
    labels = ["b", "a", "b"]
    path = tmp_path / "x.ts"
    path.write_text(ts_text(series, labels, ["a", "b"]))
    data = read_ts(path)
    assert list(data.labels) == labels
    assert data.header.class_labels == ("a", "b") and data.header.dimensions == 3
    for got, expected in zip(data.series, series):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
        np.testing.assert_allclose(np.nan_to_num(got), np.nan_to_num(expected), rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("body", "line", "words"),
    [
        (GOOD_HEADER + "1,2,3:4,5,6:a\n1,2,3:4,5,6:7,8,9:b\n", 8, "ragged"),
        (GOOD_HEADER + "1,2,3:4,5,6:a\n1,2,3:4,5,6:a\n1,x2,3:4,5,6:b\n", 9, "'x2'"),
        (GOOD_HEADER + "1,2,3:4,5,6:c\n", 7, "not declared"),
        ("@problemName Toy\n@univariate false\n@classLabel true a b\n1,2:3,4:a\n", 4, "header line"),
        ("@problemName Toy\n@univariate false\n@data\n1,2:3,4:a\n", 3, "@classlabel"),
        ("@problemName Toy\n@univariate false\n@dimensions two\n@classLabel true a\n@data\n1:a\n", 3, "@dimensions"),
        ("@problemName Toy\n@univariate false\n@dimensions 2\n@classLabel true\n@data\n1:2:a\n", 4, "list the class"),
    ],
)
def test_malformed_files_name_file_and_line(tmp_path, body, line, words):
    path = tmp_path / "bad.ts"
    path.write_text(body)
    with pytest.raises(TsFileError) as caught:
        read_ts(path)
    message = str(caught.value)
    assert caught.value.line == line
    assert f"bad.ts, line {line}:" in message
    assert words.lower() in message.lower()


def test_missing_data_section_and_missing_file(tmp_path):
    path = tmp_path / "nodata.ts"
    path.write_text("@problemName Toy\n@univariate false\n")
    with pytest.raises(TsFileError, match="no @data line.*@classlabel"):
        read_header(path)
    with pytest.raises(FileNotFoundError, match="absent.ts"):
        read_ts(tmp_path / "absent.ts")


def test_dimensions_disagreeing_with_header(tmp_path):
    path = tmp_path / "dims.ts"
    path.write_text(GOOD_HEADER.replace("@dimensions 2", "@dimensions 3") + "1,2:3,4:a\n")
    with pytest.raises(TsFileError, match="line 7: expected 3 dimensions"):
        read_ts(path)
