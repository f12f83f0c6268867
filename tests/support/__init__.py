"""What the test suites share: the one moto seeder, playbook runners, hostile names and other fixtures' parts."""
