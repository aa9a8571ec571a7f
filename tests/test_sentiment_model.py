"""The logged classifier takes text through pyfunc (issue 19).

Fast tier: how ``utils.sentiment_model`` checks its input, without a model. Full tier: the
model of notebook 03's default run (one execution for the session, tests/conftest.py),
loaded back from its store as any program would.
"""

from __future__ import annotations

import os
import subprocess
import sys

import mlflow
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from utils import sentiment_model
from utils.data import find_imdb, read_split, split_file

# Four reviews nobody could read two ways (none of them is the notebooks' examples).
OBVIOUS = {
    "An absolute masterpiece. The acting is superb, the story is moving and beautiful, "
    "and I loved every single minute. One of the best films I have ever seen.": "positive",
    "A delightful, funny and heartwarming film with a wonderful cast. I enjoyed it so much "
    "and I will happily watch it again.": "positive",
    "The worst movie I have ever seen. Terrible acting, a boring and stupid plot, and awful "
    "dialogue. A complete waste of time and money.": "negative",
    "Dreadful from start to finish: dull, badly written, poorly acted and painfully slow. "
    "I hated it and walked out before the end.": "negative",
}
# The test accuracy of the default run was 0.745 when the course was measured (README);
# on reviews it never saw, it must stay clear of a coin.
HELD_OUT_FLOOR = 0.68
HELD_OUT_PER_LABEL = 100


# -- the input check, without a model (fast) -------------------------------------------------
@pytest.mark.parametrize("given, expected", [
    ("A fine film.", ["A fine film."]),
    (["A fine film.", "Dull."], ["A fine film.", "Dull."]),
    (pd.Series(["A fine film."]), ["A fine film."]),
    (pd.DataFrame({"review": ["A fine film.", "Dull."]}), ["A fine film.", "Dull."]),
    (pd.DataFrame({0: ["A fine film."]}), ["A fine film."]),  # what MLflow makes of a list
])
def test_reviews_come_as_text_a_list_or_a_review_column(given, expected):
    assert sentiment_model.review_texts(given) == expected


BAD_INPUT = {
    "empty list": ([], "There are no reviews to classify: give at least one review text."),
    "a number": (["A fine film.", 3], "Review 1 is 3 (int), not text."),
    "blank text": (["  "], "Review 0 is empty: give the text of a review."),
    "wrong shape": ({"reviews": ["A fine film."]}, "Give the reviews as a list of strings or a "
                    "DataFrame with a 'review' column; got dict."),
    "another column": (pd.DataFrame({"text": ["A fine film."]}), "Give the reviews as a list of "
                       "strings or in one column named 'review'; got the columns ['text']."),
}


@pytest.mark.parametrize("case", BAD_INPUT, ids=list(BAD_INPUT))
def test_bad_input_is_an_invalid_parameter_with_a_clear_message(case):
    given, message = BAD_INPUT[case]
    with pytest.raises(MlflowException) as raised:
        sentiment_model.review_texts(given)
    assert message in raised.value.message
    # INVALID_PARAMETER_VALUE is what MLflow's model server answers with HTTP 400.
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"
    assert raised.value.get_http_status_code() == 400


# -- the model of notebook 03's default run (full) -----------------------------------------------
def held_out_reviews(workspace) -> pd.DataFrame:
    """HELD_OUT_PER_LABEL reviews of each label from the course data's validation split that
    the run's subset (in the workspace's data folder) does not hold: the run never saw them."""
    subset = workspace / "data" / "imdb-500-100-200-seed42"
    seen = set()
    for split in ("train", "valid", "test"):
        seen |= set(pd.read_csv(subset / f"{split}.csv")["review"])
    unseen = read_split(split_file(find_imdb().path, "valid"))
    unseen = unseen[~unseen["review"].isin(seen)]
    return pd.concat([unseen[unseen["sentiment"] == label].head(HELD_OUT_PER_LABEL)
                      for label in ("negative", "positive")]).reset_index(drop=True)


@pytest.mark.full
def test_it_is_right_on_reviews_it_never_saw(default_run, classifier):
    reviews = held_out_reviews(default_run.workspace)
    assert len(reviews) == 2 * HELD_OUT_PER_LABEL
    predicted = classifier.predict(reviews[["review"]])["label"]
    accuracy = (predicted == reviews["sentiment"]).mean()
    assert accuracy >= HELD_OUT_FLOOR, f"accuracy {accuracy:.3f} on {len(reviews)} reviews it never saw"


@pytest.mark.full
def test_pyfunc_needs_only_the_model_s_requirements_not_the_course_package(default_run):
    """``mlflow models serve`` and batch jobs elsewhere have no ``utils``: the flavor module
    travels in the model's ``code/`` folder."""
    code = (
        "import sys; sys.modules['utils'] = None  # importing utils now fails\n"
        "import mlflow\n"
        f"model = mlflow.pyfunc.load_model('runs:/{default_run.run_id}/model')\n"
        f"print(model.predict({list(OBVIOUS)!r})['label'].tolist())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                          cwd=default_run.workspace,
                          env={**os.environ, "MLFLOW_TRACKING_URI": default_run.tracking_uri})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == repr(list(OBVIOUS.values()))
