"""repro.metrics: the medmnist evaluator's ACC/AUC, per-label AUC, Dice, chest normal/abnormal, kNN."""

import json
import math
import warnings

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from repro import metrics
from repro.metrics import (BINARY, MULTI_CLASS, MULTI_LABEL, ORDINAL, dice, disease_recall, evaluate, knn_predict,
                          mean_auc, medmnist_acc, medmnist_auc, normal_abnormal_accuracy, per_label_auc,
                          scores_from_logits, sigmoid, softmax)

# -- binary -------------------------------------------------------------------------------------

BINARY_TRUTH = np.array([[0], [0], [1], [1]])
BINARY_POSITIVE = np.array([0.1, 0.4, 0.35, 0.8])  # pairs (pos > neg): 0.35>0.1, 0.8>0.1, 0.8>0.4 -> 3/4


def test_binary_auc_one_column_and_two_columns_use_the_positive_class():
    assert medmnist_auc(BINARY_TRUTH, BINARY_POSITIVE[:, None], BINARY) == pytest.approx(0.75)
    two_columns = np.stack([1 - BINARY_POSITIVE, BINARY_POSITIVE], axis=1)
    assert medmnist_auc(BINARY_TRUTH, two_columns, BINARY) == pytest.approx(0.75)
    assert medmnist_auc(BINARY_TRUTH.ravel(), BINARY_POSITIVE, BINARY) == pytest.approx(0.75)


def test_binary_acc_is_strictly_greater_than_threshold():
    truth = np.array([0, 1, 0, 0])
    positive = np.array([0.5, 0.6, 0.5, 0.2])  # predictions 0,1,0,0: the two 0.5s are negative
    two_columns = np.stack([1 - positive, positive], axis=1)
    assert medmnist_acc(truth, two_columns, BINARY) == pytest.approx(1.0)
    # with >= the 0.5s would count as positive: predictions 1,1,1,0 -> 2 of 4
    assert medmnist_acc(truth, two_columns, BINARY, threshold=0.49) == pytest.approx(0.5)


# -- multi-label --------------------------------------------------------------------------------

ML_TRUTH = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
ML_SCORES = np.array([[0.9, 0.5], [0.3, 0.6], [0.6, 0.05], [0.45, 0.1]])


def test_multi_label_auc_is_the_mean_of_per_label_aucs():
    # label 0: positives 0.9,0.6 beat negatives 0.3,0.45 -> 1.0
    # label 1: positives 0.6,0.05 vs negatives 0.5,0.1 -> 2 of 4 pairs -> 0.5
    assert medmnist_auc(ML_TRUTH, ML_SCORES, MULTI_LABEL) == pytest.approx(0.75)


def test_multi_label_acc_is_the_mean_of_per_label_accuracies():
    # label 0 predictions 1,0,1,0 -> 4/4; label 1 predictions 0,1,0,0 (0.5 is not > 0.5) -> 3/4
    assert medmnist_acc(ML_TRUTH, ML_SCORES, MULTI_LABEL) == pytest.approx(0.875)


# -- multi-class and ordinal --------------------------------------------------------------------

MC_TRUTH = np.array([0, 1, 2, 2, 1, 0])
MC_SCORES = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.1, 0.3, 0.6],
                      [0.3, 0.4, 0.3], [0.4, 0.4, 0.2], [0.5, 0.1, 0.4]])


def test_multi_class_auc_is_the_unweighted_one_vs_rest_mean():
    # class 0: 8/8 pairs; class 1: 7.5/8 (one tie at 0.4); class 2: 6.5/8 (one tie at 0.3)
    expected = (1.0 + 0.9375 + 0.8125) / 3
    assert medmnist_auc(MC_TRUTH, MC_SCORES, MULTI_CLASS) == pytest.approx(expected)
    sklearn_macro_ovr = roc_auc_score(MC_TRUTH, MC_SCORES, multi_class="ovr", average="macro")
    assert medmnist_auc(MC_TRUTH, MC_SCORES, MULTI_CLASS) == pytest.approx(sklearn_macro_ovr)


def test_multi_class_acc_is_argmax_accuracy_with_first_maximum_on_ties():
    # argmax: 0,1,2,1,0(tie 0.4/0.4 -> first),0 -> 4 of 6 right
    assert medmnist_acc(MC_TRUTH, MC_SCORES, MULTI_CLASS) == pytest.approx(4 / 6)


def test_ordinal_regression_scores_like_multi_class_and_accepts_n_by_1_labels():
    column = MC_TRUTH[:, None]
    assert medmnist_auc(column, MC_SCORES, ORDINAL) == pytest.approx(medmnist_auc(MC_TRUTH, MC_SCORES, MULTI_CLASS))
    assert medmnist_acc(column, MC_SCORES, ORDINAL) == pytest.approx(4 / 6)


def test_auc_is_nan_when_a_class_is_missing_from_the_truth():
    truth = np.array([0, 0, 1, 1])  # class 2 never occurs
    scores = softmax(np.arange(12.0).reshape(4, 3))
    assert math.isnan(medmnist_auc(truth, scores, MULTI_CLASS))


# -- probabilities and evaluate -----------------------------------------------------------------

def test_softmax_and_sigmoid_are_stable_at_extreme_logits():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow would warn
        probabilities = softmax(np.array([[1000.0, 0.0, -1000.0], [1.0, 1.0, 1.0]]))
        assert probabilities[0] == pytest.approx([1.0, 0.0, 0.0])
        assert probabilities[1] == pytest.approx([1 / 3] * 3)
        assert sigmoid(np.array([-1000.0, 0.0, 1000.0])) == pytest.approx([0.0, 0.5, 1.0])
    assert sigmoid(np.array([2.0]))[0] == pytest.approx(1 / (1 + math.exp(-2.0)))
    assert sigmoid(np.array([-3.0]))[0] + sigmoid(np.array([3.0]))[0] == pytest.approx(1.0)


def test_scores_from_logits_picks_sigmoid_for_multi_label_and_softmax_otherwise():
    logits = np.array([[0.0, math.log(3.0)]])
    assert scores_from_logits(logits, MULTI_LABEL)[0] == pytest.approx([0.5, 0.75])
    assert scores_from_logits(logits, MULTI_CLASS)[0] == pytest.approx([0.25, 0.75])
    assert scores_from_logits(logits, BINARY)[0] == pytest.approx([0.25, 0.75])
    assert scores_from_logits(np.array([[math.log(3.0)]]), BINARY)[0] == pytest.approx([0.75])


def test_evaluate_returns_json_serialisable_floats():
    truth = np.array([[0], [1], [2], [1]])
    logits = np.array([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [0.0, 1.0, 5.0], [2.0, 0.0, 1.0]])
    result = evaluate(truth, logits, MULTI_CLASS)
    assert set(result) == {"acc", "auc"}
    assert all(type(value) is float for value in result.values())
    assert result["acc"] == pytest.approx(3 / 4)  # argmax 0,1,2,0
    # probabilities (rounded): class 1 column 0.114, 0.665, 0.018, 0.090 -> positives 0.665, 0.090
    # beat 3 of 4 negative pairs; classes 0 and 2 are separated perfectly
    assert result["auc"] == pytest.approx((1.0 + 0.75 + 1.0) / 3)
    assert result == json.loads(json.dumps(result))


# -- per-label table ----------------------------------------------------------------------------

def test_per_label_auc_reports_nan_for_a_degenerate_label_and_the_mean_ignores_it():
    truth = np.column_stack([ML_TRUTH, np.zeros(4, int)])  # third label never positive
    scores = np.column_stack([ML_SCORES, [0.1, 0.2, 0.3, 0.4]])
    table = per_label_auc(truth, scores, names=["atelectasis", "cardiomegaly", "hernia"])
    assert list(table) == ["atelectasis", "cardiomegaly", "hernia"]
    assert table["atelectasis"] == pytest.approx(1.0)
    assert table["cardiomegaly"] == pytest.approx(0.5)
    assert math.isnan(table["hernia"])
    assert mean_auc(table) == pytest.approx(0.75)
    assert mean_auc([float("nan")]) != mean_auc([float("nan")])  # all undefined -> NaN
    assert list(per_label_auc(ML_TRUTH, ML_SCORES)) == ["0", "1"]


# -- Dice ---------------------------------------------------------------------------------------

def test_dice_perfect_disjoint_and_partial():
    mask = np.array([[1, 1, 0, 0]], float)
    assert dice(mask, mask) == pytest.approx(1.0)
    assert dice(1 - mask, mask) == pytest.approx(1e-6 / (4 + 1e-6))
    assert dice(1 - mask, mask) < 1e-6
    assert dice(np.zeros(4), np.zeros(4)) == pytest.approx(1.0)  # empty prediction of an empty mask


def test_dice_soft_versus_thresholded():
    prob = np.array([[0.8, 0.6, 0.1, 0.0]])
    mask = np.array([[1.0, 1.0, 0.0, 0.0]])
    # soft: 2*(0.8+0.6) / (1.5 + 2) = 2.8 / 3.5
    assert dice(prob, mask) == pytest.approx((2.8 + 1e-6) / (3.5 + 1e-6))
    assert dice(prob, mask, threshold=0.5) == pytest.approx(1.0)
    # threshold 0.6 is strict: only 0.8 survives -> 2*1 / (1 + 2)
    assert dice(prob, mask, threshold=0.6) == pytest.approx((2.0 + 1e-6) / (3.0 + 1e-6))


def test_dice_sums_over_the_whole_batch_not_per_sample():
    prob = np.array([[1.0, 0.0], [0.0, 0.0]])
    mask = np.array([[1.0, 0.0], [1.0, 1.0]])
    assert dice(prob, mask) == pytest.approx((2.0 + 1e-6) / (4.0 + 1e-6))


# -- chest normal / abnormal --------------------------------------------------------------------

# columns: finding A, finding B, No Finding
CHEST_TRUTH = np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]])
CHEST_SCORES = np.array([[0.1, 0.1, 0.7],   # normal, predicted normal: right
                         [0.9, 0.2, 0.2],   # abnormal, predicted abnormal: right
                         [0.2, 0.8, 0.5],   # abnormal, P(No Finding) = 0.5 >= 0.5 -> normal: wrong
                         [0.6, 0.1, 0.4],   # normal, predicted abnormal: wrong
                         [0.7, 0.7, 0.1]])  # abnormal, predicted abnormal: right


def test_normal_abnormal_accuracy_and_disease_recall():
    assert normal_abnormal_accuracy(CHEST_TRUTH, CHEST_SCORES) == pytest.approx(3 / 5)
    assert disease_recall(CHEST_TRUTH, CHEST_SCORES) == pytest.approx(2 / 3)
    first = [2, 0, 1]  # No Finding moved to column 0
    assert normal_abnormal_accuracy(CHEST_TRUTH[:, first], CHEST_SCORES[:, first], no_finding_index=0) == \
        pytest.approx(3 / 5)
    assert disease_recall(CHEST_TRUTH[:, first], CHEST_SCORES[:, first], no_finding_index=0) == pytest.approx(2 / 3)


def test_disease_recall_is_nan_without_abnormal_samples():
    assert math.isnan(disease_recall(CHEST_TRUTH[[0, 3]], CHEST_SCORES[[0, 3]]))


# -- kNN ----------------------------------------------------------------------------------------

def test_knn_vote_ties_go_to_the_smallest_label():
    train = np.array([[0.0], [1.0], [2.0], [3.0]])
    labels = np.array([[2], [2], [0], [0]])
    assert knn_predict(train, labels, np.array([[1.5]]), k=4).tolist() == [0]
    assert knn_predict(train, labels, np.array([[0.2]]), k=3).tolist() == [2]  # 2,2,0: plain majority


def test_knn_distance_ties_go_to_the_lower_train_index():
    query = np.array([[0.0]])
    assert knn_predict(np.array([[1.0], [-1.0]]), np.array([5, 3]), query, k=1).tolist() == [5]
    assert knn_predict(np.array([[-1.0], [1.0]]), np.array([3, 5]), query, k=1).tolist() == [3]
    # index 0 at distance 0, then indices 1..3 all at distance 2: index 1 joins -> labels 4, 1 tie -> 1
    train = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [-2.0, 0.0]])
    assert knn_predict(train, np.array([4, 1, 0, 0]), query.repeat(2, axis=1), k=2).tolist() == [1]


def test_knn_multi_label_uses_mean_of_neighbour_labels_strictly_above_half():
    train = np.array([[0.0], [1.0], [2.0], [3.0], [100.0]])
    labels = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 1], [1, 0, 0], [0, 0, 1]])
    predicted = knn_predict(train, labels, np.array([[1.5]]), k=4, task=MULTI_LABEL)
    assert predicted.tolist() == [[1, 0, 0]]  # means 0.75, 0.5, 0.25


def test_knn_chunks_agree_with_brute_force(monkeypatch):
    rng = np.random.default_rng(0)
    train, queries = rng.normal(size=(40, 5)), rng.normal(size=(13, 5))
    labels = rng.integers(0, 3, size=40)
    monkeypatch.setattr(metrics, "KNN_CHUNK_ELEMENTS", 40 * 4)  # 4 query rows per chunk
    predicted = knn_predict(train, labels, queries, k=5)
    distances = np.linalg.norm(queries[:, None] - train[None], axis=2)
    nearest = np.argsort(distances, axis=1, kind="stable")[:, :5]
    expected = [np.bincount(labels[row], minlength=3).argmax() for row in nearest]
    assert predicted.tolist() == expected


def test_knn_caps_k_at_the_train_set_size():
    assert knn_predict(np.array([[0.0], [9.0]]), np.array([1, 0]), np.array([[0.0]]), k=11).tolist() == [0]


# -- bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize("call, message", [
    (lambda: medmnist_auc(np.zeros(10), np.full((9, 2), 0.5), BINARY), "y_true has 10 rows, y_score 9"),
    (lambda: medmnist_acc([0, 1], [[0.5, np.nan], [0.5, 0.5]], BINARY), "scores contain NaN"),
    (lambda: medmnist_acc([0, 1], [[0.5, np.inf], [0.5, 0.5]], BINARY), "scores contain infinite"),
    (lambda: medmnist_auc([0, np.nan], [0.1, 0.2], BINARY), "y_true values contain NaN"),
    (lambda: medmnist_auc([0, 1], [0.1, 0.2], "regression"), "unknown task 'regression'"),
    (lambda: evaluate([0, 1], [[0.0, 1.0], [1.0, 0.0]], "multiclass"), "unknown task 'multiclass'"),
    (lambda: evaluate([0, 1], [[0.0, np.nan], [1.0, 0.0]], MULTI_CLASS), "logits contain NaN"),
    (lambda: medmnist_acc(ML_TRUTH[:, :1], ML_SCORES, MULTI_LABEL), "same shape"),
    (lambda: medmnist_acc([0, 1], np.full((2, 3), 1 / 3), BINARY), "binary-class scores need 1 or 2 columns"),
    (lambda: medmnist_acc([0, 3], np.full((2, 3), 1 / 3), MULTI_CLASS), "labels must be integers in 0..2"),
    (lambda: medmnist_acc(ML_TRUTH, ML_SCORES, MULTI_CLASS), "expects y_true of shape N or N×1"),
    (lambda: medmnist_acc([], np.zeros((0, 2)), BINARY), "no samples"),
    (lambda: per_label_auc(ML_TRUTH, ML_SCORES, names=["a"]), "names has 1 entries"),
    (lambda: dice(np.zeros((2, 3)), np.zeros((3, 2))), "prob has shape (2, 3), mask (3, 2)"),
    (lambda: dice([np.nan], [1.0]), "prob values contain NaN"),
    (lambda: normal_abnormal_accuracy(CHEST_TRUTH, CHEST_SCORES, no_finding_index=3), "out of range"),
    (lambda: knn_predict(np.zeros((3, 2)), [0, 1], np.zeros((1, 2))), "train_labels has 2 rows"),
    (lambda: knn_predict(np.zeros((3, 2)), [0, 1, 1], np.zeros((1, 4))), "have 4 features"),
    (lambda: knn_predict(np.zeros((3, 2)), [0, 1, 1], np.zeros((1, 2)), k=0), "k must be a positive integer"),
    (lambda: knn_predict(np.zeros((3, 2)), [0, 1, 1], np.zeros((1, 2)), task="nope"), "unknown task"),
])
def test_bad_input_raises_value_error_naming_the_problem(call, message):
    with pytest.raises(ValueError) as error:
        call()
    assert message in str(error.value)


def test_knn_scores_are_the_neighbours_vote_fractions_and_rank_like_sklearn_knn():
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(3)
    train, labels, queries = rng.normal(size=(60, 5)), rng.integers(0, 4, 60), rng.normal(size=(25, 5))
    neighbours = metrics.knn_neighbour_labels(train, labels, queries, k=11)
    scores = metrics.knn_scores(neighbours, MULTI_CLASS, n_classes=5)  # class 4 never occurs: a zero column
    reference = KNeighborsClassifier(11, algorithm="ball_tree").fit(train, labels).predict_proba(queries)
    np.testing.assert_allclose(scores[:, :4], reference, atol=1e-15)
    assert scores.shape == (25, 5) and np.all(scores[:, 4] == 0) and np.allclose(scores.sum(axis=1), 1)
    assert np.array_equal(np.argmax(scores, axis=1), knn_predict(train, labels, queries, k=11))


def test_knn_multi_label_scores_are_the_mean_neighbour_labels():
    train, labels = np.array([[0.0], [1.0], [2.0], [10.0]]), np.array([[1, 0], [1, 1], [0, 0], [0, 1]])
    neighbours = metrics.knn_neighbour_labels(train, labels, np.array([[0.9]]), k=3, task=MULTI_LABEL)
    assert neighbours.shape == (1, 3, 2)
    np.testing.assert_array_equal(metrics.knn_scores(neighbours, MULTI_LABEL), [[2 / 3, 1 / 3]])
