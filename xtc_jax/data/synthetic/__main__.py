"""`python -m xtc_jax.data.synthetic --out DIR ...`: render a synthetic Taskonomy tree."""

from xtc_jax.data.synthetic.generate import main

if __name__ == "__main__":
    main()
