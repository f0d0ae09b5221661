"""The paper's tables and figures, generated from metrics files (``pixsup.steps.make_report``)."""
