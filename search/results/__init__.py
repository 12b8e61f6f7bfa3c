"""Reading results: the Pareto front and its hypervolume (``pareto``), the HTML report
(``report``), an ablation's statistics (``stats``), the live and after-the-fact terminal
views (``view``) and reading a sweep back from its store (``review``)."""
