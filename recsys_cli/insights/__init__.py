"""Dataset insights: one tidy table (a polars DataFrame) behind every figure and summary number.

`tables` computes ratings, items, time and tag tables; `segments` tests genre preference by
demographic segment; `build.compute_insights` runs what the dataset supports and returns an
`Insights` (summary, tables, statements); `report` writes the figures and the offline HTML page.
Nothing here imports a face (cli/).
"""
