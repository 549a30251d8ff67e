"""flanforge.model"""

if "." not in __name__:  # imported under its bare name (the repository root on sys.path): not ours to answer
    from flanforge.bare_names import hand_over

    hand_over(__name__, __file__)
