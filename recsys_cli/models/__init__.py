"""Model core: the Recommender base, the registry of models, and the models themselves."""
