# Core (libbsa) tests.  Module tests live in each module's fragment.
