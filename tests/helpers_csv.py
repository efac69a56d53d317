"""A rigidity table in the commented-CSV format of ../shared/data (three AMS-02-like rows) for the data tests."""

from __future__ import annotations

HEADER = "R_low_GV,R_high_GV,R_rep_GV,flux,stat_err_lo,stat_err_hi,sys_err_lo,sys_err_hi"
GOOD_ROWS = [
    "2.15,2.4,2.271,0.5117,0.0015,0.0015,0.0259,0.0259",
    "2.4,2.67,2.531,0.4927,0.0013,0.0013,0.0224,0.0224",
    "2.67,2.97,2.815,0.4549,0.0011,0.0011,0.0188,0.0188",
]
