"""MemSR (Wu et al., "MemSR: Training Memory-efficient Lightweight Model for Image Super-Resolution", ICML 2022).

:mod:`kdplugins.memsr.convert`: exact conversion of EDSR-style teachers to plain networks (Sec. 3.2, Prop. 3.6).
:mod:`kdplugins.memsr.winning_init`: Algorithm 1 and the winning initialization of a plain student (Sec. 3.3, 3.5).
"""
