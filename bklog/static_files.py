"""Static files under names carrying their content's hash (Django's ManifestStaticFilesStorage,
compressed by WhiteNoise), so browsers may keep them for a year."""

from whitenoise.storage import CompressedManifestStaticFilesStorage


class HashedStaticFiles(CompressedManifestStaticFilesStorage):
    def url(self, name, force=False):
        # Hashed names in DEBUG too (dev deploys run collectstatic as every other): Django would
        # name the plain file there, which nginx caches for an hour only.
        return super().url(name, force=True)

    def stored_name(self, name):
        # Before collectstatic (the tests' client, a checkout) a page names the plain file rather
        # than failing: hashed names exist only once collected.
        try:
            return super().stored_name(name)
        except ValueError:
            return name
