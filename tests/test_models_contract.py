"""Every registered model runs the shared ModelContract (tests/contract.py)."""

from contract import ModelContract


class TestBias(ModelContract):
    model_name = "bias"
    personalised = False


class TestBiasSGD(ModelContract):
    model_name = "bias"
    params = {"method": "sgd", "epochs": 20}
    personalised = False


class TestPopularity(ModelContract):
    model_name = "popularity"
    personalised = False


class TestPopularityDampedMean(ModelContract):
    model_name = "popularity"
    params = {"kind": "damped_mean", "min_ratings": 5}
    personalised = False


class TestSVD(ModelContract):
    model_name = "svd"
    params = {"factors": 8, "epochs": 60, "lr_all": 0.02, "reg_all": 0.02}


class TestSVDpp(ModelContract):
    model_name = "svdpp"
    params = {"factors": 8, "epochs": 60, "lr_all": 0.02, "reg_all": 0.02}


class TestSurpriseSVD(ModelContract):
    model_name = "surprise:SVD"
    params = {"n_factors": 8, "n_epochs": 60, "lr_all": 0.02, "reg_all": 0.02}


class TestSurpriseBaselineOnly(ModelContract):
    model_name = "surprise:BaselineOnly"
    personalised = False


class TestSurpriseKNNBaseline(ModelContract):
    model_name = "surprise:KNNBaseline"
    params = {"k": 10, "sim_options": '{"name": "pearson_baseline", "user_based": false}'}


class TestContent(ModelContract):
    model_name = "content"


class TestItemKNN(ModelContract):
    model_name = "item-knn"
    params = {"k": 10, "rank_by": "mean"}  # scores are predicted ratings: the rating-score contract applies


class TestItemKNNSum(ModelContract):
    model_name = "item-knn"
    params = {"k": 10, "rank_by": "sum", "similarity": "cosine", "prediction": "means"}


class TestUserKNN(ModelContract):
    model_name = "user-knn"
    params = {"k": 10, "similarity": "pearson_baseline", "prediction": "means", "rank_by": "mean"}


class TestUserKNNMsdSum(ModelContract):
    model_name = "user-knn"
    params = {"k": 10, "similarity": "msd", "rank_by": "sum"}


class TestALS(ModelContract):
    model_name = "als"
    params = {"factors": 8, "iterations": 10, "reg": 0.05, "reg_bias": 0.05}


class TestIALS(ModelContract):
    model_name = "ials"
    params = {"factors": 8, "iterations": 10, "reg": 0.1}
    predicts_ratings = False


class TestIALSCholesky(ModelContract):
    model_name = "ials"
    params = {"factors": 8, "iterations": 10, "reg": 0.1, "solver": "cholesky", "interactions": "threshold"}
    predicts_ratings = False


class TestHybridALS(ModelContract):
    model_name = "hybrid-als"
    params = {"factors": 8, "iterations": 10, "reg": 0.05, "reg_bias": 0.05}


class TestBlend(ModelContract):
    model_name = "blend"
    params = {
        "models": "svd,item-knn,bias",
        "params": '{"svd": {"factors": 8, "epochs": 60, "lr_all": 0.02, "reg_all": 0.02}, "item-knn": {"k": 10}}',
        "val_fraction": 0.3,
    }


class TestBPR(ModelContract):
    model_name = "bpr"
    params = {"factors": 8, "epochs": 40, "lr": 0.05, "reg": 0.01, "threads": 1}
    predicts_ratings = False


class TestFM(ModelContract):
    model_name = "fm"
    params = {"factors": 4, "iterations": 40, "burn_in": 10}


class TestFMCG(ModelContract):
    model_name = "fm"
    params = {"factors": 4, "iterations": 40, "burn_in": 10, "sampler": "cg"}


class TestFMALS(ModelContract):
    model_name = "fm"
    params = {"solver": "als", "groups": "user,item,genres", "factors": 4, "iterations": 20, "reg_w": 1.0, "reg_v": 1.0}


class TestBPMF(ModelContract):
    model_name = "bpmf"
    params = {"factors": 4, "iterations": 40, "burn_in": 10}


class TestEASE(ModelContract):
    model_name = "ease"
    params = {"reg": 10.0}
    predicts_ratings = False


class TestEASERestricted(ModelContract):
    model_name = "ease"
    params = {"reg": 10.0, "dtype": "float32", "max_items": 29, "weight": "rating"}
    predicts_ratings = False


class TestRankBlend(ModelContract):
    model_name = "rank-blend"
    params = {
        "models": "ials,ease",
        "params": '{"ials": {"factors": 8, "iterations": 10, "reg": 0.1}, "ease": {"reg": 10}}',
    }
    predicts_ratings = False


class TestRankBlendRankFusion(ModelContract):
    model_name = "rank-blend"
    params = {
        "models": "ials,ease,item-knn",
        "params": '{"ials": {"factors": 8, "iterations": 10, "reg": 0.1}, "ease": {"reg": 10}, "item-knn": {"k": 10}}',
        "fusion": "rank",
        "weight_step": 0.25,
    }
    predicts_ratings = False


class TestRP3beta(ModelContract):
    model_name = "rp3beta"
    params = {"neighbours": 10}
    predicts_ratings = False


class TestP3alphaAllNeighboursRatings(ModelContract):
    model_name = "rp3beta"
    params = {"alpha": 0.8, "beta": 0.0, "neighbours": 0, "normalise": True, "weight": "rating"}
    predicts_ratings = False
