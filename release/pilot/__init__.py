"""`dirac-release pilot build`: one VO's pilot folder (pilot.tar, pilot.json, checksums.sha512).

A grid job starts with the pilot wrapper, which downloads this folder, checks every file
against checksums.sha512 and runs dirac-pilot.py; pilot.json then tells the pilot which
release to install and from where. Modules by concern: `sources.py` reads the Pilot at its
pinned commit and the VO's modules, `checks.py` refuses what the Pilot would get silently
wrong (a shadowed module, a command nothing defines), `pilotjson.py` writes and validates
pilot.json, `archive.py` the reproducible pilot.tar and the checksums, `build.py` puts one
folder per VO in place atomically.
"""
