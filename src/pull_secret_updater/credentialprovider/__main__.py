"""``python -m pull_secret_updater.credentialprovider``: the plugin, as the bundle runs it."""

import gc

# NB: a call is one short process (well under a second, a few MiB allocated, all freed at
# exit): the cyclic garbage collector would only walk the modules' objects again and again
# while they are imported, about 6% of a call's CPU. Reference counting still frees the rest.
gc.disable()

from pull_secret_updater.credentialprovider.plugin import main  # noqa: E402

if __name__ == "__main__":
    main()
