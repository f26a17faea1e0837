"""Every error the command line prints names options and files as the user typed them:
no Python reprs (np.str_('cat')), no parameter names (label_column), no errno tags, no
Python API advice (cbackprop.load) — a walk over the errors a user meets."""

import re

import numpy as np
import pytest

from cbackprop.__main__ import main

#: What an error line must never hold: Python's words, not the command line's.
PYTHON_WORDS = re.compile(r"np\.|numpy|\[Errno|label_column|id_column|Traceback|ndarray|"
                          r"dtype\(|cbackprop\.load|cbackprop\.resume|array\(|\bNone\b|"
                          r"sample_weight|validation_data|\bfit\(")


@pytest.fixture
def files(tmp_path, monkeypatch):
    """A folder of the files a user has: tables, a model, a checkpoint, junk."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    species = np.array(["bird", "cat", "dog"])[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)]
    (tmp_path / "animals_mid.csv").write_text("weight,species,height,legs\n" + "".join(
        f"{a:.3f},{s},{b:.3f},{c:.3f}\n" for (a, b, c), s in zip(X, species, strict=True)))
    (tmp_path / "animals_nolabel.csv").write_text("weight,height,legs\n" + "".join(
        f"{a:.3f},{b:.3f},{c:.3f}\n" for a, b, c in X))
    (tmp_path / "onecls.csv").write_text("a,b,kind\n1,2,cat\n3,4,cat\n")
    (tmp_path / "ints.csv").write_text("1,2\n3,2\n")
    (tmp_path / "semi.csv").write_text("a;b;c\n1;2;0\n3;4;1\n")
    (tmp_path / "renamed.csv").write_text("a,b,c\n1,2,3\n4,5,6\n")
    (tmp_path / "junk.cbp").write_text("junk")
    (tmp_path / "junk.npz").write_text("junk")
    (tmp_path / "emptydir").mkdir()
    assert main(["train", "animals_mid.csv", "--label-column", "species", "--epochs", "1",
                 "-q", "--save", "mid.cbp", "--checkpoint", "run.ckpt",
                 "--hidden", "4"]) == 0
    return tmp_path


CASES = [
    # (command line, what the one error line must say)
    ("train onecls.csv", "every label is cat"),
    ("train ints.csv --label-column 1", "every label is 2"),
    ("train animals_mid.csv --label-column 7", "--label-column 7 is out of range"),
    ("train animals_mid.csv --label-column kind", "--label-column kind: animals_mid.csv has no "
                                                  "column 'kind'"),
    ("train ints.csv --label-column kind", "--label-column kind names a column, but ints.csv "
                                           "has no header row"),
    ("train semi.csv", "--delimiter ';'"),
    ("train nope.csv", "no data set or file named 'nope.csv'"),
    ("train junk.npz", "junk.npz is not a .npz file"),
    ("train emptydir", "emptydir has no MNIST train images file"),
    ("train regression --lr 5 --optimizer sgd --epochs 3 -q", "smaller than 5 (--lr)"),
    ("train xor --resume nope.ckpt", "--resume nope.ckpt: no such file"),
    ("train xor --resume mid.cbp", "--resume mid.cbp is a model file (written by --save), not "
                                   "a checkpoint: to train it further, use --init mid.cbp"),
    ("train animals_mid.csv --resume run.ckpt --seed 3",
     "--seed 3 contradicts the run checkpointed in run.ckpt, which has --seed 0"),
    ("train animals_mid.csv --resume run.ckpt --label-column 0",
     "--label-column 0 contradicts the run checkpointed in run.ckpt, which has "
     "--label-column species"),
    ("train xor --init nope.cbp", "--init nope.cbp: no such file"),
    ("train xor --init mid.cbp", "xor has 2 features, but the model in --init mid.cbp takes 3"),
    ("train animals_nolabel.csv --init mid.cbp",
     "--label-column species (the model's, from --init mid.cbp): animals_nolabel.csv has no "
     "column 'species'"),
    ("train animals_mid.csv --label-column species --loss mse",
     "text labels are classes: they need --loss cross_entropy"),
    ("train animals_mid.csv --loss mse --label-column legs",
     "line 2, column 2 ('species'): found 'cat' where a number belongs"),
    ("train xor --save emptydir", "--save: emptydir is a folder"),
    ("train xor --validation-split 0.9999", "--validation-split 0.9999 leaves none"),
    ("evaluate nope.cbp xor", "MODEL nope.cbp: no such file"),
    ("evaluate emptydir xor", "MODEL emptydir is a directory"),
    ("evaluate junk.cbp xor", "junk.cbp is not a valid cbackprop model file"),
    ("evaluate mid.cbp animals_nolabel.csv", "animals_nolabel.csv has no label column"),
    ("evaluate mid.cbp digits", "digits has 64 features, but the model in mid.cbp takes 3"),
    ("predict mid.cbp digits", "digits has 64 features, but the model in mid.cbp takes 3"),
    ("predict mid.cbp digits --id-column name", "--id-column is for .csv/.tsv tables"),
    ("predict mid.cbp animals_mid.csv --id-column name", "--id-column name: animals_mid.csv "
                                                         "has no column 'name'"),
    ("predict mid.cbp xor --out emptydir", "--out: emptydir is a folder"),
    ("train xor --label-column 0", "--label-column is for .csv/.tsv tables"),
    ("train xor --resume run.ckpt --health", "--health is for a new run"),
    ("train xor --init mid.cbp --hidden 3", "--hidden is for a new network"),
    ("train xor --init mid.cbp --resume run.ckpt", "give one of them"),
    ("train xor --early-stopping 2 --validation-split 0", "--early-stopping"),
    ("train xor --momentum 0.9", "--momentum applies to sgd and rmsprop"),
    ("train digits --loss binary_cross_entropy", "--loss binary_cross_entropy needs targets "
                                                 "in [0, 1]; those of digits go from 0 to 9"),
    ("predict mid.cbp renamed.csv", "renamed.csv's feature columns (a, b, c) are not the "
                                    "model's (weight, height, legs)"),
    ("predict mid.cbp ints.csv", "ints.csv has 2 feature columns, but the model takes 3"),
    ("train xor --init animals_mid.csv", "--init animals_mid.csv is not a valid cbackprop "
                                         "model file"),
    ("train xor --init emptydir", "--init emptydir is a directory"),
    ("evaluate mid.cbp xor --split train --label-column 0", "--label-column is for"),
]


@pytest.mark.parametrize("command, says", CASES, ids=[c for c, _ in CASES])
def test_every_error_speaks_command_line_words(command, says, files, capsys):
    try:
        status = main(command.split())
    except SystemExit as exit_:
        status = exit_.code
    err = capsys.readouterr().err
    assert status in (1, 2), err
    assert err.count("\n") == 1, err
    assert says in err, err
    assert not PYTHON_WORDS.search(err), err
