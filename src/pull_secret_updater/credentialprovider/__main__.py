"""``python -m pull_secret_updater.credentialprovider``: the plugin, as the bundle runs it."""

from pull_secret_updater.credentialprovider.plugin import main

if __name__ == "__main__":
    main()
