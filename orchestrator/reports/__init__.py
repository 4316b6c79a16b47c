"""What a reader looks at: the HTML report pages, their plots, and a style batch's study as rows.

``page`` holds the pieces every page is made of; ``run_page``, ``sweep_page`` and ``batch_page`` assemble one
report each; ``plots`` draws the PNGs; ``attribution`` and ``batches`` read a style batch's study the way both
`atelier results` and the batch report print it; ``inspect`` makes sure of the worker's inspect job a report needs.
"""
