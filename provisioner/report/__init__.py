"""The host report: what each command's last run found on a host, and its live status, as data.

``provision_record`` and ``verify_record`` turn a run's results into the records that
provisioner/records.py keeps; cli/host_status.py reads what only the host knows (deploy history,
backups, certificates) in one round trip; ``data`` joins both into the page's data, which
``invoke report --json`` writes as is and provisioner/output/html_report.py renders, so the
page's figures and the JSON's are the same numbers.
"""
